/** An error as one line: its message and the code of its cause (ECONNREFUSED, …). */
export function oneLine(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && current !== null && depth < 4; depth++) {
    const message = current instanceof Error ? current.message : String(current);
    const code = (current as { code?: unknown }).code;
    const text = message || (typeof code === 'string' ? code : '');
    if (text && !parts.some((part) => part.includes(text))) parts.push(text);
    else if (typeof code === 'string' && !code.startsWith('ERR_VISITOR_STATE') && !parts.includes(code))
      parts.push(code);
    current = (current as { cause?: unknown }).cause ?? firstOf(current);
  }
  return parts.join(': ').replace(/\s+/g, ' ').trim();
}

/** The first error of an AggregateError (a connection refused on both IPv4 and IPv6). */
const firstOf = (error: unknown): unknown => (error instanceof AggregateError ? error.errors[0] : undefined);
