"""Storage scripts (records and their indexes) and the global config's."""

from __future__ import annotations

# Storage. KEYS: 1-7 index block, 8 record, 9 done, 10 name index.
# ARGV: id, ttl_ms, status, has name, nf, fields...
PUT = """
local now = now_ms()
local name_key = false
if ARGV[4] == '1' then name_key = KEYS[10] end
replace_hash(KEYS[8], 6, tonumber(ARGV[5]))
settle_record(1, KEYS[8], KEYS[9], name_key, ARGV[1], ARGV[3], tonumber(ARGV[2]), now)
return 1
"""

# KEYS: 1-7 index block, 8 record, 9 done.  ARGV: id, ttl_ms, nf, fields...
# -> 1 updated, 0 no such record (nothing created), -1 refused: the record is final and the
#    update would make it unfinished (a worker that lost its lease, late).
UPDATE = """
local rec = KEYS[8]
-- Every record has a status: none means no record.
local current = redis.call('HGET', rec, 'status')
if not current then return 0 end
-- Workers update records (status `process`) while draining during OOM, like their other writes.
allow_oom()
local nf = tonumber(ARGV[3])
local status = field_of(4, nf, 'status')
if status and FINAL[current] and not FINAL[status] then return -1 end
redis.call('HSET', rec, unpack(ARGV, 4, 3 + 2 * nf))
if status and status ~= current then
  settle_record(1, rec, KEYS[9], false, ARGV[1], status, tonumber(ARGV[2]), now_ms(), current)
end
return 1
"""

# UPDATE for a batch of records in one call (the `process` marks of a worker's write-behind
# batch, see `_batch.py`); each item is exactly an UPDATE.
# KEYS: 1-7 index block, then per item (record, done).
# ARGV: ttl_ms, n, then per item: id, number of fields nf, then nf field/value pairs.
# -> per item: 1 updated, 0 no such record, -1 refused (as UPDATE).
UPDATE_MANY = """
local ttl, n = tonumber(ARGV[1]), tonumber(ARGV[2])
allow_oom()
local now, live = clock()
local out = {}
local a = 3
for i = 0, n - 1 do
  local id, nf = ARGV[a], tonumber(ARGV[a + 1])
  local first = a + 2
  a = first + 2 * nf
  local rec, done = KEYS[8 + 2 * i], KEYS[9 + 2 * i]
  local current = redis.call('HGET', rec, 'status')
  if not current then
    out[i + 1] = 0
  else
    local status = field_of(first, nf, 'status')
    if status and FINAL[current] and not FINAL[status] then
      out[i + 1] = -1
    else
      if nf > 0 then redis.call('HSET', rec, unpack(ARGV, first, a - 1)) end
      if status and status ~= current then
        settle_record(1, rec, done, false, id, status, ttl, now, current, live + i)
      end
      out[i + 1] = 1
    end
  end
end
return out
"""

# KEYS: index block.  -> live entries per index (idx:all first).  Read only.
COUNT = """
local now = now_ms()
local out = {}
for i = 1, #KEYS do out[i] = redis.call('ZCOUNT', KEYS[i], '(' .. now, '+inf') end
return out
"""

# KEYS: indexes to prune.  -> entries removed (their records expired).
PRUNE = """
local now = now_ms()
local n = 0
for i = 1, #KEYS do n = n + redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now) end
return n
"""

# Global config: a hash of JSON values plus a zset of per-key expiries (Redis 6.2 has no
# per-field TTL). When every key of a hash has an expiry, both keys expire with the last.
CONFIG_PRELUDE = """
local function purge(hash, ttls, now)
  for _, field in ipairs(redis.call('ZRANGEBYSCORE', ttls, '-inf', now)) do
    redis.call('HDEL', hash, field)
    redis.call('ZREM', ttls, field)
  end
end

local function settle_expiry(hash, ttls)
  local n, m = redis.call('HLEN', hash), redis.call('ZCARD', ttls)
  if m > 0 and m >= n then
    local last = redis.call('ZRANGE', ttls, -1, -1, 'WITHSCORES')
    local at = math.floor(tonumber(last[2]))
    redis.call('PEXPIREAT', hash, at)
    redis.call('PEXPIREAT', ttls, at)
  else
    redis.call('PERSIST', hash)
    if m > 0 then redis.call('PERSIST', ttls) end
  end
end
"""

# KEYS: 1 hash, 2 ttls, 3 names, 4 nx memo.  ARGV: key, value, ttl_ms, only new, name.
# -> 1 stored, 0 not stored (only new, and the key exists)
CONFIG_SET = """
local field, ttl, only_new = ARGV[1], tonumber(ARGV[3]), ARGV[4] == '1'
if only_new and redis.call('EXISTS', KEYS[4]) == 1 then return 1 end
local now = now_ms()
local exp = redis.call('ZSCORE', KEYS[2], field)
if only_new and redis.call('HEXISTS', KEYS[1], field) == 1
   and not (exp and tonumber(exp) <= now) then
  return 0
end
redis.call('HSET', KEYS[1], field, ARGV[2])
if ttl > 0 then
  redis.call('ZADD', KEYS[2], now + ttl, field)
else
  redis.call('ZREM', KEYS[2], field)
end
purge(KEYS[1], KEYS[2], now)
settle_expiry(KEYS[1], KEYS[2])
redis.call('SADD', KEYS[3], ARGV[5])
if only_new then redis.call('SET', KEYS[4], '1', 'PX', MEMO_TTL) end
return 1
"""

# KEYS: 1 hash, 2 ttls.  -> flat key, value list of unexpired keys.
CONFIG_GET_ALL = """
purge(KEYS[1], KEYS[2], now_ms())
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: 1 hash, 2 ttls.  ARGV: key.
CONFIG_DELETE = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
settle_expiry(KEYS[1], KEYS[2])
return 1
"""
