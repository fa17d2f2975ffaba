/**
 * A small validator for the subset of JSON Schema (draft 2020-12) that the schemas of contrib/schema use: `type`
 * (one name or a list; "integer" is a number without a fraction), `properties`, `required`,
 * `additionalProperties` (false or a schema), `items`, `enum`, `minimum`, `pattern`, `format: "date-time"`.
 * Any other keyword makes it throw, so a schema cannot silently use more than is checked here.
 */

export interface JsonSchema {
  $schema?: string;
  $id?: string;
  title?: string;
  description?: string;
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  enum?: unknown[];
  minimum?: number;
  pattern?: string;
  format?: 'date-time';
}

const KNOWN = new Set([
  '$schema', '$id', 'title', 'description', 'type', 'properties', 'required', 'additionalProperties', 'items', 'enum',
  'minimum', 'pattern', 'format',
]);

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

/**
 * Check `value` against `schema`.
 * @returns one line per violation, each naming the JSON path (`$.volume.block_free`); empty when valid
 * @throws Error when the schema uses a keyword this validator does not know
 */
export function validateJson(schema: JsonSchema, value: unknown, at = '$'): string[] {
  for (const k of Object.keys(schema)) if (!KNOWN.has(k)) throw new Error(`${at}: schema keyword ${k} is not supported`);
  const errors: string[] = [];
  const t = typeOf(value);
  if (schema.type !== undefined) {
    const want = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!want.includes(t) && !(t === 'integer' && want.includes('number'))) {
      return [`${at}: ${t}, expected ${want.join(' or ')}`];
    }
  }
  if (schema.enum && !schema.enum.some((e) => e === value)) errors.push(`${at}: ${JSON.stringify(value)} not in ${JSON.stringify(schema.enum)}`);
  if (schema.minimum !== undefined && typeof value === 'number' && value < schema.minimum) errors.push(`${at}: ${value} < ${schema.minimum}`);
  if (typeof value === 'string') {
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) errors.push(`${at}: ${JSON.stringify(value)} does not match ${schema.pattern}`);
    if (schema.format === 'date-time' && (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(value) || Number.isNaN(Date.parse(value)))) {
      errors.push(`${at}: ${JSON.stringify(value)} is not an RFC 3339 date-time`);
    }
  }
  if (t === 'object') {
    const obj = value as Record<string, unknown>;
    for (const r of schema.required ?? []) if (!(r in obj)) errors.push(`${at}: missing ${r}`);
    for (const [k, v] of Object.entries(obj)) {
      const sub = schema.properties?.[k];
      if (sub) errors.push(...validateJson(sub, v, `${at}.${k}`));
      else if (schema.additionalProperties === false) errors.push(`${at}: unexpected ${k}`);
      else if (typeof schema.additionalProperties === 'object') errors.push(...validateJson(schema.additionalProperties, v, `${at}.${k}`));
    }
  }
  if (t === 'array' && schema.items) (value as unknown[]).forEach((v, i) => errors.push(...validateJson(schema.items!, v, `${at}[${i}]`)));
  return errors;
}
