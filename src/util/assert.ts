/**
 * Always-on assertions for programmer errors (style.md). In the daemon a failed assertion ends the process and
 * leaves `.autofsck`, so the next mount checks the volume.
 */
export class AssertionError extends Error {
  constructor(message: string) {
    super(`assertion failed: ${message}`);
    this.name = 'AssertionError';
  }
}

export function assert(condition: unknown, message = 'invariant'): asserts condition {
  if (!condition) throw new AssertionError(message);
}
