"""Scripts that recover from failure: lapsed leases (reap), dead letters, cancels."""

from __future__ import annotations

# KEYS: 1 lease, 2 meta.  ARGV: limit.  -> {id, meta, ...} of lapsed leases (read only).
REAP_SCAN = """
local now = now_ms()
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0,
                               tonumber(ARGV[1]))) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
end
return out
"""

# KEYS: 1-6 state, 7 seq, 8 dead, 9 dead info, 10-16 index block, 17.. (ready, wake) per
#       queue, then (record, done, name index) per item.
# ARGV: max recoveries, ttl_ms, dead cap, nq, ni, then per item: id, queue index, has name,
#       task name.
# -> {{id, recoveries, ...} returned to their queue, {id, sample, ...} dead-lettered as
#    poison, {id, ...} finished as cancelled (asked to cancel, then their worker died)}
REAP = """
local max_rec, ttl, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local nq, ni = tonumber(ARGV[4]), tonumber(ARGV[5])
local Q = 17
local base = Q + 2 * nq
allow_oom()
local now = now_ms()
local recovered, dead, cancelled = {}, {}, {}
for i = 0, ni - 1 do
  local a = 6 + 4 * i
  local id, q, task = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 3]
  local rec, done = KEYS[base + 3 * i], KEYS[base + 3 * i + 1]
  local name_key = false
  if ARGV[a + 2] == '1' then name_key = KEYS[base + 3 * i + 2] end
  local deadline = redis.call('ZSCORE', KEYS[1], id)
  -- Re-checked here: a heartbeat or a finish since the scan wins.
  if deadline and tonumber(deadline) <= now then
    local owner = redis.call('HGET', KEYS[2], id) or ''
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    local count = redis.call('HINCRBY', KEYS[5], id, 1)
    -- Poison is judged by crashes while the task ran. A first lapse cannot tell which of the
    -- tasks a dead worker held was running, so it counts for all of them; after it, the worker
    -- runs the task as a suspect (one at a time) and marks its start under its lease token
    -- before running it (`s:<id>`), so later lapses count only if it really started. A cap on
    -- lapses bounds a task whose worker keeps dying before starting it.
    local started = redis.call('HGET', KEYS[5], 's:' .. id)
    redis.call('HDEL', KEYS[5], 's:' .. id)
    local crashes = tonumber(redis.call('HGET', KEYS[5], 'c:' .. id) or '0') or 0
    if count == 1 or (started and owner:sub(-#started - 1) == '\\n' .. started) then
      crashes = redis.call('HINCRBY', KEYS[5], 'c:' .. id, 1)
    end
    local flagged = redis.call('HGET', KEYS[6], id)
    if flagged then
      cancel_record(10, rec, done, name_key, id, flagged, ttl, now)
      forget(id)
      cancelled[#cancelled + 1] = id
    elseif crashes > max_rec or count > 4 * (max_rec + 1) then
      local sample = string.sub(redis.call('HGET', KEYS[3], id) or '', 1, 1024)
      bury(KEYS[8], KEYS[9], id, 'poison', sample, task, now, cap)
      fail_record(10, rec, done, name_key, id, 'poison',
                  'dead-lettered: poison (its worker was lost ' .. crashes ..
                  ' times while it ran, ' .. count .. ' lapsed leases)', ttl, now)
      forget(id)
      dead[#dead + 1] = id
      dead[#dead + 1] = sample
    else
      redis.call('ZADD', KEYS[Q + 2 * q],
                 ready_score(KEYS[7], priority_of(redis.call('HGET', KEYS[4], id))), id)
      wake(KEYS[Q + 2 * q + 1])
      local status = redis.call('HGET', rec, 'status')
      if status and not FINAL[status] then
        redis.call('HSET', rec, 'status', 'new', 'recoveries', count, 'updated_at', stamp(now))
        index_record(10, name_key, id, 'new', live_score())
      end
      recovered[#recovered + 1] = id
      recovered[#recovered + 1] = count
    end
  end
end
return {recovered, dead, cancelled}
"""

# KEYS: 1-6 state, 7 dead, 8 dead info, 9-15 index block, 16 record, 17 done, 18 name index.
# ARGV: id, worker, token, reason, sample, task, ttl_ms, dead cap, has name, message, nf,
#       fields...  (the worker's record if nf > 0; either way it ends as status error with
#       `dead_reason`, and `message` as traceback unless it has one)
# -> 1 dead-lettered, 0 lease lost.
DEAD_LETTER = """
local id = ARGV[1]
if redis.call('HGET', KEYS[2], id) ~= ARGV[2] .. '\\n' .. ARGV[3] then return 0 end
allow_oom()
local now = now_ms()
local ttl, nf = tonumber(ARGV[7]), tonumber(ARGV[11])
local name_key = false
if ARGV[9] == '1' then name_key = KEYS[18] end
bury(KEYS[7], KEYS[8], id, ARGV[4], ARGV[5], ARGV[6], now, tonumber(ARGV[8]))
forget(id)
if nf > 0 then replace_hash(KEYS[16], 12, nf) end
fail_record(9, KEYS[16], KEYS[17], name_key, id, ARGV[4], ARGV[10], ttl, now)
return 1
"""

# KEYS: 1-6 state, 7 ready, 8 delayed, 9-15 index block, 16 record, 17 done, 18 name index.
# ARGV: id, has reason, reason, ttl_ms, channel, has name.
# -> 'signalled' (leased: its worker is told), 'cancelled' (was queued: never runs),
#    'final' (a record but no queue entry), 'unknown'.
CANCEL = """
local id = ARGV[1]
local rec = KEYS[16]
if redis.call('ZSCORE', KEYS[1], id) then
  -- Stored and sent as '0' (no reason) or '1' .. reason.
  redis.call('HSET', KEYS[6], id, ARGV[2] .. ARGV[3])
  redis.call('PUBLISH', ARGV[5], id .. '\\n' .. ARGV[2] .. ARGV[3])
  return 'signalled'
end
if redis.call('HEXISTS', KEYS[3], id) == 1 then
  local now = now_ms()
  local name_key = false
  if ARGV[6] == '1' then name_key = KEYS[18] end
  cancel_record(9, rec, KEYS[17], name_key, id, ARGV[2] .. ARGV[3], tonumber(ARGV[4]), now)
  redis.call('ZREM', KEYS[7], id)
  redis.call('ZREM', KEYS[8], id)
  forget(id)
  return 'cancelled'
end
if redis.call('EXISTS', rec) == 1 then return 'final' end
return 'unknown'
"""
