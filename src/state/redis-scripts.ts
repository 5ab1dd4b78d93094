import { createHash } from 'node:crypto';

/**
 * The Lua scripts of the Redis storage. Each gets KEYS[1] = the visitor's index (a SET of its
 * bin names) and KEYS[2] = one bin's key, both under the visitor's `{id}` hash tag, so they
 * live in one cluster slot and a script is atomic on a Cluster as on one server. A bin key is
 * the index key, ':' and the bin name.
 *
 * The index expires no sooner than its longest-lived bin (PEXPIRE only lengthens it); a name
 * whose bin expired stays in it until `bins` or `entries` reads it and drops it.
 */
const remember = `
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end`;

const sources = {
  /** ARGV: bin, json, px. */
  set: `redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])${remember}
return 1`,
  /** ARGV: bin, json, px. 1 when stored, 0 when the bin was there. */
  add: `if not redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3], 'NX') then return 0 end${remember}
return 1`,
  /** ARGV: bin. */
  delete: `redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[1], ARGV[1])
return 1`,
  /**
   * A compare-and-set. ARGV: bin, json to store or '' to delete, px, '1' when the bin was
   * read present (then ARGV[5] is the text read) or '0' when read absent. {1} when written;
   * {0, current text} or {0} when the bin changed since it was read.
   */
  update: `local current = redis.call('GET', KEYS[2])
if ARGV[4] == '1' then
  if current ~= ARGV[5] then return current and {0, current} or {0} end
elseif current then return {0, current} end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[1], ARGV[1])
  return {1}
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])${remember}
return {1}`,
  /** ARGV: '1' to return each bin's text and remaining ms too. The live names, flat. */
  list: `local out = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = KEYS[1] .. ':' .. name
  if ARGV[1] == '1' then
    local text = redis.call('GET', key)
    if text then
      out[#out + 1] = name
      out[#out + 1] = text
      out[#out + 1] = redis.call('PTTL', key)
    else redis.call('SREM', KEYS[1], name) end
  elseif redis.call('EXISTS', key) == 1 then out[#out + 1] = name
  else redis.call('SREM', KEYS[1], name) end
end
return out`,
} as const;

export type ScriptName = keyof typeof sources;

export interface Script {
  readonly source: string;
  readonly sha: string;
}

export const scripts: Record<ScriptName, Script> = Object.fromEntries(
  Object.entries(sources).map(([name, source]) => [
    name,
    { source, sha: createHash('sha1').update(source).digest('hex') },
  ]),
) as Record<ScriptName, Script>;
