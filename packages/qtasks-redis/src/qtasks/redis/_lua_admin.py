"""Administration scripts (stats, CLI, web view)."""

from __future__ import annotations

# KEYS: 1 lease, 2 dead, 3 finished ring, 4 per-minute finished ring, then (ready, delayed)
#       per queue.  Read only.
# -> {processing, dead, finished in the last minute, {finished per minute over the last hour,
#    oldest first, the current minute last}, then per queue {ready, delayed,
#    {priority, count, ...}}}; priorities are found by range, O(priorities * log n).
STATS = """
local now = now_ms()
local sec = math.floor(now / 1000)
local finished = 0
for _, v in ipairs(redis.call('HVALS', KEYS[3])) do
  local at, c = string.match(v, '^(%d+):(%d+)$')
  if at and sec - tonumber(at) < 60 then finished = finished + tonumber(c) end
end
local minute = math.floor(now / 60000)
local per_minute = {}
for i = 1, 60 do per_minute[i] = 0 end
for _, v in ipairs(redis.call('HVALS', KEYS[4])) do
  local at, c = string.match(v, '^(%d+):(%d+)$')
  local age = at and minute - tonumber(at)
  if age and age >= 0 and age < 60 then per_minute[60 - age] = tonumber(c) end
end
local out = {redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), finished, per_minute}
for q = 5, #KEYS, 2 do
  local prios = {}
  local first = redis.call('ZRANGE', KEYS[q], 0, 0, 'WITHSCORES')
  while first[2] and #prios < 2000 do
    local p = math.floor(tonumber(first[2]) / SPAN)
    local hi = (p + 1) * SPAN
    prios[#prios + 1] = p
    prios[#prios + 1] = redis.call('ZCOUNT', KEYS[q], p * SPAN, string.format('(%.0f', hi))
    first = redis.call('ZRANGEBYSCORE', KEYS[q], hi, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  end
  out[#out + 1] = {redis.call('ZCARD', KEYS[q]), redis.call('ZCARD', KEYS[q + 1]), prios}
end
return out
"""

# KEYS: 1-6 state, 7 seq, 8 dead, 9 dead info, 10 ready, 11 wake, 12-18 index block, 19 record,
#       20 name index.
# ARGV: id, payload, meta, priority.  -> 1 queued again, 0 not dead-lettered or no record.
RETRY_DEAD = """
local id = ARGV[1]
if not redis.call('ZSCORE', KEYS[8], id) or redis.call('EXISTS', KEYS[19]) == 0 then
  return 0
end
redis.call('HSET', KEYS[3], id, ARGV[2])
redis.call('HSET', KEYS[4], id, ARGV[3])
redis.call('HDEL', KEYS[5], id)
redis.call('ZREM', KEYS[8], id)
redis.call('HDEL', KEYS[9], id)
redis.call('ZADD', KEYS[10], ready_score(KEYS[7], tonumber(ARGV[4])), id)
wake(KEYS[11])
local now = now_ms()
redis.call('HSET', KEYS[19], 'status', 'new', 'recoveries', '0', 'updated_at', stamp(now))
redis.call('HDEL', KEYS[19], 'dead_reason', 'traceback', 'finished_at', 'started_at')
redis.call('PERSIST', KEYS[19])
index_record(12, KEYS[20], id, 'new', live_score())
return 1
"""

# KEYS: 1 dead, 2 dead info.  ARGV: id, or nothing for all.  -> entries removed.
PURGE_DEAD = """
if #ARGV == 0 then
  local n = redis.call('ZCARD', KEYS[1])
  redis.call('DEL', KEYS[1], KEYS[2])
  return n
end
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
"""

# KEYS: 1-6 state, 7 ready, 8 delayed, 9-15 index block, then (record, done, name index) per id.
# ARGV: ttl_ms, reason, then per id: id, has name.
# -> tasks removed (still queued: a claimed one is left alone).
PURGE_QUEUE = """
local now = now_ms()
local n = 0
for j = 0, (#ARGV - 2) / 2 - 1 do
  local id = ARGV[3 + 2 * j]
  local rec, done = KEYS[16 + 3 * j], KEYS[17 + 3 * j]
  local name_key = false
  if ARGV[4 + 2 * j] == '1' then name_key = KEYS[18 + 3 * j] end
  if redis.call('ZREM', KEYS[7], id) + redis.call('ZREM', KEYS[8], id) > 0 then
    forget(id)
    -- Its name index too: a live score left there listed it as running for good.
    cancel_record(9, rec, done, name_key, id, '1' .. ARGV[2], tonumber(ARGV[1]), now)
    n = n + 1
  end
end
return n
"""
