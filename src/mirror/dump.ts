/**
 * `mirrorddumbfs dump`: a DDMS stream rendered for humans, one line per record (mirroring spec §4.16 "mirror dump",
 * a decoder for debugging and tests). Rendering only: the CLI prints.
 *
 * Line shape: `SEQ TYPE @OFFSET+SIZE [flags=...] field=value ...`, fields in tag order with their wire names
 * (stream_codec.ts byte table). Invariants: one record is one line and fields are separated by single spaces that
 * no value contains (paths, names and text are quoted and escaped), and paths are shown from their bytes, never
 * decoded as UTF-8: printable ASCII other than space, `\` and `"` as itself, every other byte as `\xHH`.
 */
import { FLAG_COMPRESSED, FLAG_MUST_UNDERSTAND, decodeStream, type DecodedRecord } from './stream_codec.js';
import { SCHEMAS, type DirEntry, type Field, type Kind, type Xattr } from './record_body.js';

/** How much to show. */
export interface DumpOptions {
  /** Every hash of a hash list (default: the first DUMP_LIST_ITEM_COUNT, then a count). */
  full?: boolean;
}

/** Items of a hash or path list shown without --full: enough to recognise a list, one line stays readable. */
const DUMP_LIST_ITEM_COUNT = 4;

/** Bytes as a quoted, escaped string: printable ASCII but space, `\` and `"` as is, anything else `\xHH`. */
export function escapeBytes(bytes: Uint8Array): string {
  let out = '"';
  for (const b of bytes) {
    if (b > 0x20 && b <= 0x7e && b !== 0x5c && b !== 0x22) out += String.fromCharCode(b);
    else out += `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return `${out}"`;
}

function list<T>(items: T[], render: (t: T) => string, options: DumpOptions): string {
  const shown = options.full ? items : items.slice(0, DUMP_LIST_ITEM_COUNT);
  const more = items.length - shown.length;
  return `${items.length}[${shown.map(render).join(',')}${more > 0 ? `,...+${more}` : ''}]`;
}

function renderValue(field: Field, value: unknown, options: DumpOptions): string {
  const kind: Kind = field.kind;
  switch (kind.k) {
    case 'u8':
    case 'u16':
    case 'u32':
      return field.wire === 'mode' ? `0${(value as number).toString(8)}` : String(value);
    case 'u64':
    case 'i64':
      return String(value);
    case 'bool':
      return value ? 'yes' : 'no';
    case 'id128':
    case 'digest':
    case 'hash':
    case 'bitmap':
      return (value as Buffer).toString('hex');
    case 'block':
      return `<${(value as Buffer).length} bytes>`;
    case 'blocks':
      return `<${(value as Buffer).length} bytes>`;
    case 'bytes':
    case 'path':
      return escapeBytes(value as Buffer);
    case 'text':
      return escapeBytes(Buffer.from(value as string, 'latin1'));
    case 'enum':
      return value as string;
    case 'hashes':
      return list(value as Buffer[], (h) => h.toString('hex'), options);
    case 'paths':
      return list(value as Buffer[], escapeBytes, options);
    case 'xattrs':
      return list(value as Xattr[], (x) => `${escapeBytes(x.name)}=${x.value.toString('hex')}`, { full: true });
    case 'entries':
      return list(
        value as DirEntry[],
        (e) => `${escapeBytes(e.name)}:${e.entryType}:${e.tid}${e.digest ? `:${e.digest.toString('hex')}` : ''}`,
        options,
      );
    case 'struct':
      return `{${renderFields(kind.fields, value as Record<string, unknown>, options)}}`;
  }
}

function renderFields(fields: readonly Field[], values: Record<string, unknown>, options: DumpOptions): string {
  const parts: string[] = [];
  for (const field of fields) {
    const value = values[field.name];
    if (value !== undefined) parts.push(`${field.wire}=${renderValue(field, value, options)}`);
  }
  return parts.join(' ');
}

/**
 * One line (no newline) for a decoded record.
 * @param d a record from StreamDecoder or decodeStream
 */
export function renderRecord(d: DecodedRecord, options: DumpOptions = {}): string {
  const flags: string[] = [];
  if (d.flags & FLAG_COMPRESSED) flags.push('deflate');
  if (d.flags & FLAG_MUST_UNDERSTAND) flags.push('must-understand');
  const head = `${d.seq} ${d.record.type} @${d.offset}+${d.sizeBytes}${flags.length > 0 ? ` flags=${flags.join(',')}` : ''}`;
  const r = d.record;
  if (r.type === 'UNKNOWN') return `${head} type_code=${r.typeCode} body=<${r.body.length} bytes>`;
  const fields = renderFields(SCHEMAS[r.type], r as unknown as Record<string, unknown>, options);
  return fields === '' ? head : `${head} ${fields}`;
}

/**
 * The dump of a stream: one line per record as it is checked, then a summary line
 * `# N records, B bytes, ends with TERM|ERROR`.
 * @throws DdfsError from the decoder (after yielding the lines of every record before the fault)
 */
export async function* dumpLines(source: AsyncIterable<Uint8Array>, options: DumpOptions = {}): AsyncGenerator<string> {
  let count = 0;
  let last: DecodedRecord | null = null;
  for await (const d of decodeStream(source)) {
    count++;
    last = d;
    yield renderRecord(d, options);
  }
  const sizeBytes = last === null ? 0 : last.offset + last.sizeBytes;
  yield `# ${count} records, ${sizeBytes} bytes, ends with ${last?.record.type ?? 'nothing'}`;
}
