/**
 * Exit codes of every command, in one table (style.md). `--help` texts and the man pages repeat them.
 * fsckddumbfs keeps ddumbfs's own codes (0 OK, 1 error, 2 warning); every other command uses these.
 */
export const EXIT = {
  /** success */
  OK: 0,
  /** operating error: bad volume, I/O error, integrity failure */
  ERROR: 1,
  /** usage error: wrong arguments (mkddumbfs: also "user declined") */
  USAGE: 2,
  /** interrupted by SIGINT */
  INTERRUPTED: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The exit-status paragraph shared by `--help` texts. */
export const EXIT_HELP = `Exit status:
  0    success
  1    error (bad volume, I/O error, integrity failure)
  2    usage error
  130  interrupted`;
