/**
 * Exit codes of every command, in one table (style.md). `--help` texts and the man pages repeat them.
 *
 * The ddumbfs 1.1 commands (mkddumbfs, ddumbfs, fsckddumbfs, cpddumbfs, testddumbfs, alterddumbfs) exit as
 * upstream does, because scripts written for ddumbfs 1.1 test these codes: a usage error is 1 like any other error
 * (upstream's getopt loops `return 1`), and mkddumbfs exits 2 only when the user declined to initialise a block device
 * (spec §12). fsckddumbfs adds 2 for WARNING (spec §10.5, findings.ts FSCK_EXIT). mirrorddumbfs has no upstream: it
 * keeps 2 for a usage error, as most Unix tools (and rsync) do.
 */
export const EXIT = {
  /** success */
  OK: 0,
  /** operating error: bad volume, I/O error, integrity failure */
  ERROR: 1,
  /** usage error of a ddumbfs 1.1 command (wrong arguments): the same code as an error, as upstream */
  USAGE: 1,
  /** mkddumbfs: the user declined to initialise a block device (spec §12) */
  DECLINED: 2,
  /** resizeddumbfs: NEWSIZE cannot hold the blocks in use; nothing was changed */
  RESIZE_TOO_SMALL: 2,
  /** usage error of mirrorddumbfs (no upstream to follow) */
  MIRROR_USAGE: 2,
  /** interrupted by SIGINT */
  INTERRUPTED: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The exit-status paragraph shared by `--help` texts. */
export const EXIT_HELP = `Exit status:
  0    success
  1    error (bad volume, I/O error, integrity failure) or usage error
  130  interrupted`;
