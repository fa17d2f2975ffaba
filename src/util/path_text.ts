/**
 * Paths of the UFS tree as text for messages (errors, warnings). UFS paths are bytes (Buffer) end to end; a message
 * is a JS string, so a path's bytes are shown as UTF-8 when they are valid UTF-8, and otherwise with every byte of
 * an invalid sequence escaped as `\xNN` — never replaced by U+FFFD, so two different names never read the same.
 * Reports that must reproduce a name exactly (corrupted.txt, log files) write the bytes themselves instead.
 */

/** `p` for a message: a string unchanged; a Buffer as UTF-8 where valid, `\xNN` for each other byte. */
export function pathText(p: string | Buffer): string {
  if (typeof p === 'string') return p;
  const s = p.toString('utf8');
  if (!s.includes('\uFFFD') || Buffer.from(s, 'utf8').equals(p)) return s;
  let out = '';
  let k = 0;
  while (k < p.length) {
    const n = utf8SequenceLength(p, k);
    if (n > 0) {
      out += p.toString('utf8', k, k + n);
      k += n;
    } else {
      out += `\\x${p[k]!.toString(16).padStart(2, '0')}`;
      k++;
    }
  }
  return out;
}

/** Length of the well-formed UTF-8 sequence at `k` (1–4), or 0 when the bytes there are not one. */
function utf8SequenceLength(b: Buffer, k: number): number {
  const c = b[k]!;
  if (c < 0x80) return 1;
  const n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
  if (n === 0 || k + n > b.length) return 0;
  for (let j = 1; j < n; j++) if ((b[k + j]! & 0xc0) !== 0x80) return 0;
  // overlong 3/4-byte forms, surrogates and code points past U+10FFFF
  const c1 = b[k + 1]!;
  if (c === 0xe0 && c1 < 0xa0) return 0;
  if (c === 0xed && c1 >= 0xa0) return 0;
  if (c === 0xf0 && c1 < 0x90) return 0;
  if (c === 0xf4 && c1 >= 0x90) return 0;
  return n;
}

/** A path as bytes: a Buffer unchanged, a string encoded as UTF-8 (what node:fs does with string paths). */
export function pathBytes(p: string | Buffer): Buffer {
  return typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
}

/** `a` + `/` + `b` as bytes (`b` alone when `a` is empty). */
export function joinPathBytes(a: Buffer, b: Buffer): Buffer {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const slash = a[a.length - 1] === 0x2f ? 0 : 1;
  const out = Buffer.allocUnsafe(a.length + slash + b.length);
  a.copy(out, 0);
  if (slash) out[a.length] = 0x2f;
  b.copy(out, a.length + slash);
  return out;
}

/**
 * A report line naming UFS paths exactly: a tagged template whose Buffer interpolations are raw bytes. Gives a
 * string when every Buffer is valid UTF-8 (the same bytes once written as UTF-8), else a Buffer of the UTF-8 text
 * around the raw bytes (for corrupted.txt, the log, stdout). Other interpolations are formatted as by `${}`.
 * Example: rawText`corrupted header: ${path}`.
 */
export function rawText(strings: TemplateStringsArray, ...values: unknown[]): string | Buffer {
  const raw = values.some((v) => Buffer.isBuffer(v) && !isUtf8(v));
  if (!raw) {
    let s = strings[0]!;
    values.forEach((v, k) => {
      s += (Buffer.isBuffer(v) ? v.toString('utf8') : String(v)) + strings[k + 1]!;
    });
    return s;
  }
  const parts: Buffer[] = [Buffer.from(strings[0]!, 'utf8')];
  values.forEach((v, k) => {
    parts.push(Buffer.isBuffer(v) ? v : Buffer.from(String(v), 'utf8'), Buffer.from(strings[k + 1]!, 'utf8'));
  });
  return Buffer.concat(parts);
}

/** Whether `b` is well-formed UTF-8. */
export function isUtf8(b: Buffer): boolean {
  let k = 0;
  while (k < b.length) {
    const n = utf8SequenceLength(b, k);
    if (n === 0) return false;
    k += n;
  }
  return true;
}

/** A report text as the bytes to write (a string as UTF-8). */
export function textBytes(t: string | Buffer): Buffer {
  return typeof t === 'string' ? Buffer.from(t, 'utf8') : t;
}

/** `a` followed by `b` (text as UTF-8, bytes raw), as rawText does: a string unless either is raw bytes. */
export function concatText(a: string | Buffer, b: string | Buffer): string | Buffer {
  if (typeof a === 'string' && typeof b === 'string') return a + b;
  return Buffer.concat([typeof a === 'string' ? Buffer.from(a, 'utf8') : a, typeof b === 'string' ? Buffer.from(b, 'utf8') : b]);
}
