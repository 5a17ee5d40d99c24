"""The helpers every script may use; `scripts._with_helpers` sends each script only the ones
it uses (the conventions they follow are in `scripts.py`)."""

from __future__ import annotations

from qtasks.redis.keys import DONE_TTL_MS, MEMO_TTL_MS

PRELUDE = """
local STATUSES = {'new', 'process', 'success', 'error', 'cancel', 'retry'}

local FINAL = {success = true, error = true, cancel = true, retry = true}

local SPAN = 4294967296

-- Index scores. Finished records: their expiry (ms), so ZREMRANGEBYSCORE -inf now prunes what
-- expired; FOREVER + finish time (ms) without a TTL; LIVE + last change (us, plus the position
-- in a batch) while queued or running. All stay below 2^53, exact as doubles. Reversed, an
-- index lists live tasks first (latest first), then the most recently finished.
local LIVE = 4503599627370496
local FOREVER = 2251799813685248
local DONE_TTL = @DONE_TTL@
local MEMO_TTL = @MEMO_TTL@

local function live_score(offset)
  local t = redis.call('TIME')
  return LIVE + tonumber(t[1]) * 1000000 + tonumber(t[2]) + (offset or 0)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- One clock read for a whole call: now (ms) and the live score base (LIVE + us).
local function clock()
  local t = redis.call('TIME')
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  return math.floor(us / 1000), LIVE + us
end

-- Seconds, as records store timestamps.
local function stamp(ms)
  return string.format('%.3f', ms / 1000)
end

local function allow_oom()
  redis.call('ZREM', KEYS[1], '')
end

-- Ready-queue score: lower priority first, FIFO within a priority (seq wraps at 2^32).
local function ready_score(seq_key, priority)
  return priority * SPAN + (redis.call('INCR', seq_key) % SPAN)
end

local function priority_of(meta)
  if not meta then return 0 end
  return tonumber(string.match(meta, '^(-?%d+)')) or 0
end

-- One wake-up token is enough: a worker that claims and leaves work behind passes it on.
local function wake(key)
  if redis.call('LLEN', key) == 0 then redis.call('RPUSH', key, '1') end
end

-- Memos whose reply the client has received are deleted by its next call (KEYS[#KEYS-n+1..]).
local function drop_spent(n)
  for i = #KEYS - n + 1, #KEYS do redis.call('DEL', KEYS[i]) end
end

-- Writes gathered per command and key, and sent by g:flush() as one command each (in slices:
-- Lua's unpack limit): a batch script then costs a command per key rather than per item. Only
-- for writes whose order among themselves does not matter, to keys the script does not read
-- again before the flush. `one`: the call has a single item, so there is nothing to join and
-- each write is made at once (the tables cost a single enqueue 3 of its 21 us in Redis).
local function gather(one)
  local g = {}
  if one then
    function g:add(cmd, key, a, b)
      if b ~= nil then redis.call(cmd, key, a, b) else redis.call(cmd, key, a) end
    end
    function g:flush() end
    return g
  end
  local lists, order = {}, {}
  function g:add(cmd, key, a, b)
    -- Tables by command, then key: joining the two into one tag would build a string per add.
    local by_key = lists[cmd]
    if not by_key then
      by_key = {}
      lists[cmd] = by_key
    end
    local list = by_key[key]
    if not list then
      list = {}
      by_key[key] = list
      order[#order + 1] = {cmd, key, list}
    end
    list[#list + 1] = a
    if b ~= nil then list[#list + 1] = b end
  end
  function g:flush()
    for _, o in ipairs(order) do
      local list = o[3]
      for j = 1, #list, 2000 do
        redis.call(o[1], o[2], unpack(list, j, math.min(j + 1999, #list)))
      end
    end
  end
  return g
end

-- Forget a task's queue state (not its queue entry, not its record). `lapsed`: false when
-- the caller just read that the task never lapsed (its crash count is absent).
local function forget(id, lapsed)
  redis.call('ZREM', KEYS[1], id)
  for i = 2, 4 do redis.call('HDEL', KEYS[i], id) end
  -- The crash count and start mark exist only for a task that lapsed before (see REAP).
  if lapsed ~= false and redis.call('HDEL', KEYS[5], id) == 1 then
    redis.call('HDEL', KEYS[5], 'c:' .. id, 's:' .. id)
  end
  redis.call('HDEL', KEYS[6], id)
end

-- Replace a hash with ARGV[from .. from + 2n - 1]; the write comes first (see OOM above).
local function replace_hash(key, from, n)
  if n == 0 then return end
  redis.call('HSET', key, unpack(ARGV, from, from + 2 * n - 1))
  local keep = {}
  for i = from, from + 2 * n - 1, 2 do keep[ARGV[i]] = true end
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if not keep[field] then redis.call('HDEL', key, field) end
  end
end

local function field_of(from, n, name)
  for i = from, from + 2 * n - 1, 2 do
    if ARGV[i] == name then return ARGV[i + 1] end
  end
  return nil
end

-- A worker's final write: the record becomes exactly ARGV[from .. from + 2n - 1], except that
-- the recoveries are Redis's to count (in `recov`; the worker builds its record from the
-- envelope). Only after a script's first write (`allow_oom`): the record is deleted before
-- it is written. -> the record's status before the write, and whether the task ever lapsed.
local function write_record(rec, recov, id, from, n)
  local old = redis.call('HGET', rec, 'status')
  redis.call('DEL', rec)
  if n > 0 then redis.call('HSET', rec, unpack(ARGV, from, from + 2 * n - 1)) end
  local count = redis.call('HGET', recov, id)
  local recoveries = tonumber(count or '0') or 0
  if recoveries > (tonumber(field_of(from, n, 'recoveries') or '0') or 0) then
    redis.call('HSET', rec, 'recoveries', recoveries)
  end
  return old, count ~= false
end

-- Index a record under KEYS[I] (idx:all) and KEYS[I+1..I+6] (per status). `old`: the
-- record's status before this write, when the script read it. Every write keeps a record in
-- its own status index only (entries of expired records carry their expiry as score and are
-- pruned by it), so only `old`'s index can hold the id; without `old` all five are swept.
local function index_record(I, name_key, id, status, score, old)
  local sweep = not (old == 'new' or old == 'process' or FINAL[old])
  redis.call('ZADD', KEYS[I], score, id)
  for i, s in ipairs(STATUSES) do
    if s == status then
      redis.call('ZADD', KEYS[I + i], score, id)
    elseif sweep or s == old then
      redis.call('ZREM', KEYS[I + i], id)
    end
  end
  if name_key then redis.call('ZADD', name_key, score, id) end
end

-- index_record's writes gathered in `g`, for a record whose old status the script read.
local function index_gathered(g, I, name_key, id, status, score, old)
  g:add('ZADD', KEYS[I], score, id)
  for i, s in ipairs(STATUSES) do
    if s == status then
      g:add('ZADD', KEYS[I + i], score, id)
    elseif s == old then
      g:add('ZREM', KEYS[I + i], id)
    end
  end
  if name_key then g:add('ZADD', name_key, score, id) end
end

-- After a record write: a final record gets its TTL and wakes its result waiters; an unfinished
-- one lives as long as its task. `live`: the live score when the caller read the clock
-- already. -> the record's index score.
local function settle_ttl(rec, done, status, ttl_ms, now, live)
  local score
  if FINAL[status] then
    if ttl_ms > 0 then
      redis.call('PEXPIRE', rec, ttl_ms)
      score = now + ttl_ms
    else
      redis.call('PERSIST', rec)
      score = FOREVER + now
    end
    if redis.call('LLEN', done) == 0 then redis.call('RPUSH', done, '1') end
    -- The token never outlives the record it announces.
    if ttl_ms > 0 and ttl_ms < DONE_TTL then
      redis.call('PEXPIRE', done, ttl_ms)
    else
      redis.call('PEXPIRE', done, DONE_TTL)
    end
  else
    redis.call('PERSIST', rec)
    score = live or live_score()
  end
  return score
end

-- settle_ttl, then index_record (`old` as there).
local function settle_record(I, rec, done, name_key, id, status, ttl_ms, now, old, live)
  index_record(I, name_key, id, status, settle_ttl(rec, done, status, ttl_ms, now, live), old)
end

-- A cancelled task's record (status cancel); `flag` as the cancel hash stores it: '0', or '1'
-- followed by the reason.
local function cancel_record(I, rec, done, name_key, id, flag, ttl_ms, now)
  if redis.call('EXISTS', rec) == 0 then return end
  local s = stamp(now)
  redis.call('HSET', rec, 'status', 'cancel', 'updated_at', s, 'finished_at', s)
  if string.sub(flag, 1, 1) == '1' then
    redis.call('HSET', rec, 'cancel_reason', string.sub(flag, 2))
  end
  settle_record(I, rec, done, name_key, id, 'cancel', ttl_ms, now)
end

-- A dead-lettered task's record: status error with the reason (the worker's traceback, if it
-- wrote one, is kept).
local function fail_record(I, rec, done, name_key, id, reason, message, ttl_ms, now)
  if redis.call('EXISTS', rec) == 0 then return end
  local s = stamp(now)
  redis.call('HSET', rec, 'status', 'error', 'dead_reason', reason, 'updated_at', s)
  redis.call('HSETNX', rec, 'traceback', message)
  redis.call('HSETNX', rec, 'finished_at', s)
  settle_record(I, rec, done, name_key, id, 'error', ttl_ms, now)
end

-- `by` more finishes (default 1) in slot `slot` of a 60-field ring ("slot:count"; a field from
-- an older lap starts over).
local function bump_ring(key, slot, by)
  local field = tostring(slot % 60)
  local n = by or 1
  local cur = redis.call('HGET', key, field)
  if cur then
    local at, c = string.match(cur, '^(%d+):(%d+)$')
    if tonumber(at) == slot then n = tonumber(c) + n end
  end
  redis.call('HSET', key, field, string.format('%d:%d', slot, n))
end

-- Tasks finished per second over the last minute and per minute over the last hour.
local function count_finished(sec_ring, min_ring, now, by)
  bump_ring(sec_ring, math.floor(now / 1000), by)
  bump_ring(min_ring, math.floor(now / 60000), by)
end

-- Dead-letter entry "reason\\nat\\n<len(task)>\\n<task><sample>", capped at `cap` entries.
local function bury(dead, info, id, reason, sample, task, now, cap)
  redis.call('ZADD', dead, now, id)
  redis.call('HSET', info, id,
             reason .. '\\n' .. now .. '\\n' .. string.len(task) .. '\\n' .. task .. sample)
  local excess = redis.call('ZCARD', dead) - cap
  if excess > 0 then
    for _, old in ipairs(redis.call('ZRANGE', dead, 0, excess - 1)) do
      redis.call('ZREM', dead, old)
      redis.call('HDEL', info, old)
    end
  end
end
""".replace("@DONE_TTL@", str(DONE_TTL_MS)).replace("@MEMO_TTL@", str(MEMO_TTL_MS))
