/**
 * Byte paths as text: pathText escapes exactly the bytes of invalid UTF-8 (never U+FFFD), rawText keeps raw bytes
 * in report lines and stays a string when everything is UTF-8, joinPathBytes joins without decoding.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { concatText, isUtf8, joinPathBytes, pathText, rawText, textBytes } from './path_text.js';

const B = (s: string): Buffer => Buffer.from(s, 'latin1');

describe('pathText', () => {
  it('shows valid UTF-8 as is and escapes each invalid byte', () => {
    expect(pathText('/a/\u00e9')).toBe('/a/\u00e9');
    expect(pathText(Buffer.from('/a/\u00e9t\u00e9', 'utf8'))).toBe('/a/\u00e9t\u00e9');
    expect(pathText(B('bad\xff\xfename'))).toBe('bad\\xff\\xfename');
    // a lone continuation byte, a truncated sequence, an overlong form, a surrogate
    expect(pathText(B('\x80|\xc3|\xc0\xaf|\xed\xa0\x80'))).toBe('\\x80|\\xc3|\\xc0\\xaf|\\xed\\xa0\\x80');
    expect(pathText(Buffer.from('\ufffd', 'utf8'))).toBe('\ufffd'); // a real U+FFFD in a name stays
  });

  it('two different byte names never give the same text unless one spells the other\'s escapes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 12 }), fc.uint8Array({ maxLength: 12 }), (a, b) => {
      const x = Buffer.from(a);
      const y = Buffer.from(b);
      if (x.includes(0x5c) || y.includes(0x5c)) return; // a backslash can spell an escape
      if (!x.equals(y)) expect(pathText(x)).not.toBe(pathText(y));
    }));
  });
});

describe('rawText', () => {
  it('is a string when every Buffer is UTF-8, else the raw bytes between UTF-8 text', () => {
    expect(rawText`file: ${Buffer.from('caf\u00e9', 'utf8')} #${3}`).toBe('file: caf\u00e9 #3');
    const line = rawText`F  l ${B('bad\xff\xfename')} \u00e9 ${7}`;
    expect(Buffer.isBuffer(line)).toBe(true);
    expect((line as Buffer).equals(Buffer.concat([B('F  l bad\xff\xfename '), Buffer.from('\u00e9', 'utf8'), B(' 7')]))).toBe(true);
    expect(textBytes(concatText(line, '\n')).subarray(-1).toString()).toBe('\n');
  });
});

describe('isUtf8 and joinPathBytes', () => {
  it('agrees with a decode round trip', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 16 }), (a) => {
      const b = Buffer.from(a);
      expect(isUtf8(b)).toBe(Buffer.from(b.toString('utf8'), 'utf8').equals(b));
    }));
  });

  it('joins with exactly one slash and keeps the bytes', () => {
    expect(joinPathBytes(B('/r'), B('a\xff')).equals(B('/r/a\xff'))).toBe(true);
    expect(joinPathBytes(B('/r/'), B('a')).equals(B('/r/a'))).toBe(true);
    expect(joinPathBytes(B(''), B('a')).equals(B('a'))).toBe(true);
    expect(joinPathBytes(B('/r'), B('')).equals(B('/r'))).toBe(true);
  });
});
