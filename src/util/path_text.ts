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
