/**
 * Ctrl-C (SIGINT) for the commands that stop at a safe point (issue 10: cpddumbfs, fsckddumbfs): the first SIGINT
 * only raises an AbortSignal, which the work polls at its safe points; the command then says what was done and what
 * is left and exits EXIT.INTERRUPTED (130, as a shell reports a command killed by SIGINT). A second SIGINT exits 130
 * at once, after the command's last words (e.g. "run fsckddumbfs -n"): the user asked twice.
 *
 * While the guard is installed Node's default SIGINT action (die at once) is off; `dispose` puts it back.
 */
import { EXIT } from './exit_codes.js';

export interface SigintGuard {
  /** Aborted at the first SIGINT. */
  readonly signal: AbortSignal;
  /** Remove the handler (Node's default action again). */
  dispose(): void;
}

export interface SigintGuardOptions {
  /** Called at the first SIGINT (e.g. "stopping at a safe point, Ctrl-C again to stop at once"). */
  onFirst?: () => void;
  /** Called at the second SIGINT, just before the process exits 130 (stop a spinner, print what is left). */
  onSecond?: () => void;
}

/** Catch SIGINT until disposed. */
export function catchSigint(options: SigintGuardOptions = {}): SigintGuard {
  const controller = new AbortController();
  const onSignal = (): void => {
    if (!controller.signal.aborted) {
      controller.abort();
      options.onFirst?.();
      return;
    }
    options.onSecond?.();
    process.exit(EXIT.INTERRUPTED);
  };
  process.on('SIGINT', onSignal);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', onSignal);
    },
  };
}

/**
 * A reader that gives end of input (0) as soon as `signal` aborts, even while the underlying read waits (stdin from
 * a pipe or a terminal that sends nothing more): the copy then stops at its next safe point. A read still pending
 * completes later into the caller's buffer beyond what was returned, which the caller no longer looks at.
 */
export function abortableRead<T extends (buf: Buffer, offset: number, length: number) => Promise<number>>(read: T, signal: AbortSignal): T {
  const aborted = new Promise<number>((resolve) => {
    if (signal.aborted) resolve(0);
    else signal.addEventListener('abort', () => resolve(0), { once: true });
  });
  return (async (buf: Buffer, offset: number, length: number) => {
    if (signal.aborted) return 0;
    return Promise.race([read(buf, offset, length), aborted]);
  }) as T;
}
