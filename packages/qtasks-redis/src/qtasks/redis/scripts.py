"""Every Lua script of the package (the key schema is in `keys.py`).

Conventions shared by all scripts:

* Every key comes in `KEYS[]`; broker scripts start with the task-state block
  `KEYS[1..6] = lease, owner, msg, meta, recov, cancel`. Scripts that write records get the
  index block (idx:all then the six status indexes) at a position named `I` in the script.
* Time comes from the server (`TIME`), never from client clocks: lease deadlines, eta and
  expiries all use one clock.
* Work is O(batch): no script scans a whole queue.
* Out of memory (`maxmemory` + `noeviction`): producer scripts (enqueue, record put, config set)
  start with a write that Redis refuses under OOM, so they fail before writing anything and the
  producer gets `QueueFullError`. Worker scripts (claim, finish, requeue, reap, dead letter)
  start with a harmless non-allocating write (`allow_oom`): once a script has written, Redis
  lets it finish, so workers keep draining the queue (which frees memory) during OOM. Redis 6.2
  has no `#!lua flags=allow-oom`, hence the trick.
* Replies are flat arrays of strings and integers (the same in RESP2 and RESP3).
"""

from __future__ import annotations

import re

from qtasks.redis.keys import DONE_TTL_MS, MEMO_TTL_MS

_PRELUDE = """
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
-- again before the flush.
local function gather()
  local lists, order, g = {}, {}, {}
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

# KEYS: 1 msg, 2 meta, 3 seq, 4 queues set, 5-11 index block, 12.. (ready, delayed, wake) per
#       queue, then (record, name index) per item.
# ARGV: nq, ni, queue names..., then per item: id, payload, meta, priority, eta_ms|'', queue
#       index, status, number of record fields n, then the record's n field/value pairs.
# -> created flags (1 written, 0 skipped: the id exists, so a re-sent enqueue is a no-op)
ENQUEUE = """
local nq, ni = tonumber(ARGV[1]), tonumber(ARGV[2])
local Q = 12
local base = Q + 3 * nq
local a = 3
-- The first write: refused under OOM before anything is written (see the header).
for _ = 1, nq do
  redis.call('SADD', KEYS[4], ARGV[a])
  a = a + 1
end
local now, live = clock()
-- Pass 1: which items are new (a re-sent item is skipped), and their records. Writes to keys
-- shared by the items are gathered and made once per key in pass 2: a bulk enqueue costs
-- one command per item and key no more.
local created, new_items, seen = {}, {}, {}
for i = 0, ni - 1 do
  local id, nf = ARGV[a], tonumber(ARGV[a + 7])
  local first = a + 8
  local rec = KEYS[base + 2 * i]
  if seen[id] or redis.call('EXISTS', rec) == 1 or redis.call('HEXISTS', KEYS[1], id) == 1 then
    created[i + 1] = 0
  else
    seen[id] = true
    if nf > 0 then redis.call('HSET', rec, unpack(ARGV, first, first + 2 * nf - 1)) end
    new_items[#new_items + 1] = {i, a}
    created[i + 1] = 1
  end
  a = first + 2 * nf
end
if #new_items == 0 then return created end

-- Pass 2: the new tasks' writes to shared keys, one command per key (gather).
local g = gather()
local woken, pruned = {}, {}
local seq = redis.call('INCRBY', KEYS[3], #new_items) - #new_items
for n, item in ipairs(new_items) do
  local i, at = item[1], item[2]
  local id = ARGV[at]
  local priority, eta, q = tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4]), tonumber(ARGV[at + 5])
  g:add('HSET', KEYS[1], id, ARGV[at + 1])
  g:add('HSET', KEYS[2], id, ARGV[at + 2])
  -- Ready-queue score: lower priority first, FIFO within a priority (seq wraps at 2^32).
  if eta and eta > now then
    g:add('ZADD', KEYS[Q + 3 * q + 1], eta, id)
  else
    g:add('ZADD', KEYS[Q + 3 * q], priority * SPAN + ((seq + n) % SPAN), id)
  end
  woken[q] = true
  -- A new id: no other status index holds it (an old record with this id expired, and so
  -- did its index entries, which pruning drops), so only its own indexes are written.
  local live_at = live + i
  g:add('ZADD', KEYS[5], live_at, id)
  for s, name in ipairs(STATUSES) do
    if name == ARGV[at + 6] then g:add('ZADD', KEYS[5 + s], live_at, id) end
  end
  local name_key = KEYS[base + 2 * i + 1]
  if not pruned[name_key] then
    pruned[name_key] = true
    redis.call('ZREMRANGEBYSCORE', name_key, '-inf', now)
  end
  g:add('ZADD', name_key, live_at, id)
end
g:flush()
-- A delayed task wakes an idle worker too: it may be due before what the worker waits for.
for q = 0, nq - 1 do
  if woken[q] then wake(KEYS[Q + 3 * q + 2]) end
end
return created
"""

# KEYS: 1-6 state, 7 seq, 8 claim memo, 9.. (ready, delayed, wake) per queue, then spent memos.
# ARGV: worker, limit, lease_ms, claim id, max payload bytes, nq, number of spent memos.
# -> {now, next eta or -1, then per claimed task: id, token, queue index, kind, data,
#    lapsed leases so far (a task that lapsed before runs as a suspect, see REAP)}
#    kind: 'ok' (data = payload), 'oversized' (data = first KiB), 'missing' (no payload).
CLAIM = """
local worker, limit, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local claim_id, max_bytes, nq = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_ms()
local out = {now, -1}

-- `HMGET key ids...` in slices (Lua's unpack limit), as one list.
local function hmget(key, ids)
  local values = {}
  for j = 1, #ids, 1000 do
    for _, v in ipairs(redis.call('HMGET', key, unpack(ids, j, math.min(j + 999, #ids)))) do
      values[#values + 1] = v
    end
  end
  return values
end

-- The reply entries of the claimed {id, token, q}: the payloads of all of them in one HMGET
-- and their crash counts in another (an oversized payload is not sent: its first KiB is).
local function add_all(claimed)
  if #claimed == 0 then return end
  local ids, fetch, slot, kinds, data = {}, {}, {}, {}, {}
  for n, c in ipairs(claimed) do
    local id = c[1]
    ids[n], kinds[n], data[n] = id, 'ok', ''
    local size = redis.call('HSTRLEN', KEYS[3], id)
    if size > max_bytes then
      kinds[n], data[n] = 'oversized', string.sub(redis.call('HGET', KEYS[3], id), 1, 1024)
    elseif size > 0 then
      fetch[#fetch + 1] = id
      slot[n] = #fetch
    elseif redis.call('HEXISTS', KEYS[3], id) == 0 then
      kinds[n] = 'missing'
    end
  end
  local payloads = #fetch > 0 and hmget(KEYS[3], fetch) or {}
  local lapses = hmget(KEYS[5], ids)
  for n, c in ipairs(claimed) do
    out[#out + 1] = c[1]
    out[#out + 1] = c[2]
    out[#out + 1] = c[3]
    out[#out + 1] = kinds[n]
    out[#out + 1] = slot[n] and payloads[slot[n]] or data[n]
    out[#out + 1] = tonumber(lapses[n] or '0') or 0
  end
end

-- A re-sent claim (lost reply, client retry) returns what the first one claimed.
local memo = redis.call('GET', KEYS[8])
if memo then
  local claimed = {}
  for id, token, q in string.gmatch(memo, '([^\\n]*)\\n([^\\n]*)\\n([^\\n]*)\\n') do
    if redis.call('HGET', KEYS[2], id) == worker .. '\\n' .. token then
      claimed[#claimed + 1] = {id, token, tonumber(q)}
    end
  end
  add_all(claimed)
  return out
end

allow_oom()
drop_spent(tonumber(ARGV[7]))
-- Due delayed tasks join their ready queue.
for q = 0, nq - 1 do
  local ready, delayed = KEYS[9 + 3 * q], KEYS[10 + 3 * q]
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)) do
    redis.call('ZADD', ready, ready_score(KEYS[7], priority_of(redis.call('HGET', KEYS[4], id))),
               id)
    redis.call('ZREM', delayed, id)
  end
end

-- The best `limit` across the queues: the first `limit` of each, merged by score.
local cands = {}
for q = 0, nq - 1 do
  local r = redis.call('ZRANGE', KEYS[9 + 3 * q], 0, limit - 1, 'WITHSCORES')
  for i = 1, #r, 2 do cands[#cands + 1] = {tonumber(r[i + 1]), r[i], q} end
end
table.sort(cands, function(x, y)
  if x[1] ~= y[1] then return x[1] < y[1] end
  return x[3] < y[3]
end)

local deadline = now + lease_ms
local n, memo_parts, claimed, taken = 0, {}, {}, {}
-- The queue entries, leases and owners of the whole claim go out once per key (gather).
local g = gather()
for _, c in ipairs(cands) do
  if n >= limit then break end
  local id, q = c[2], c[3]
  g:add('ZREM', KEYS[9 + 3 * q], id)
  -- An id that is already leased (a duplicate entry) is dropped, never run twice.
  if not taken[id] and not redis.call('ZSCORE', KEYS[1], id) then
    taken[id] = true
    n = n + 1
    local token = claim_id .. ':' .. n
    g:add('ZADD', KEYS[1], deadline, id)
    g:add('HSET', KEYS[2], id, worker .. '\\n' .. token)
    claimed[n] = {id, token, q}
    if not string.find(id, '\\n', 1, true) then
      memo_parts[#memo_parts + 1] = id .. '\\n' .. token .. '\\n' .. q .. '\\n'
    end
  end
end
g:flush()
add_all(claimed)
if n > 0 then
  redis.call('SET', KEYS[8], table.concat(memo_parts), 'PX', lease_ms)
end

local next_eta = -1
for q = 0, nq - 1 do
  -- Work left behind: pass the wake-up on to another idle worker.
  if redis.call('ZCARD', KEYS[9 + 3 * q]) > 0 then wake(KEYS[11 + 3 * q]) end
  local first = redis.call('ZRANGE', KEYS[10 + 3 * q], 0, 0, 'WITHSCORES')
  if first[2] then
    local eta = tonumber(first[2])
    if next_eta < 0 or eta < next_eta then next_eta = eta end
  end
end
out[2] = next_eta
return out
"""

# KEYS: 1-6 state, then the ack memo of each lease (in ARGV order).
# ARGV: worker, lease_ms, then id, token pairs.
# -> {lost ids, {id, reason, ...} of held tasks that were asked to cancel}
#    A lease that ended with its own final write (its ack memo exists) is not lost: the worker
#    took its snapshot of leases before the finish reply arrived.
HEARTBEAT = """
local deadline = now_ms() + tonumber(ARGV[2])
local lost, cancelled = {}, {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[2], id) == ARGV[1] .. '\\n' .. ARGV[i + 1] then
    redis.call('ZADD', KEYS[1], deadline, id)
    local reason = redis.call('HGET', KEYS[6], id)
    if reason then
      cancelled[#cancelled + 1] = id
      cancelled[#cancelled + 1] = reason
    end
  elseif redis.call('EXISTS', KEYS[6 + (i - 1) / 2]) == 0 then
    lost[#lost + 1] = id
  end
end
return {lost, cancelled}
"""

# KEYS: 1-6 state.  ARGV: id, worker, token.
# -> 1 marked, 0 the lease is not this worker's any more.
# A suspect (a task that lapsed before) is about to run under this lease (see REAP).
STARTED = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] .. '\\n' .. ARGV[3] then return 0 end
allow_oom()
redis.call('HSET', KEYS[5], 's:' .. ARGV[1], ARGV[3])
return 1
"""

# KEYS: 1-6 state, 7 ack memo, 8 finished ring, 9-15 index block, 16 record, 17 done,
#       18 name index, 19 per-minute finished ring, then spent memos.
# ARGV: id, worker, token, ttl_ms, status, number of spent memos, nf, fields...
# -> 1 written, 2 already written by this lease (a re-sent finish), 0 lease lost.
FINISH = """
local id = ARGV[1]
if redis.call('HGET', KEYS[2], id) ~= ARGV[2] .. '\\n' .. ARGV[3] then
  if redis.call('EXISTS', KEYS[7]) == 1 then return 2 end
  return 0
end
allow_oom()
drop_spent(tonumber(ARGV[6]))
local now = now_ms()
local old, lapsed = write_record(KEYS[16], KEYS[5], id, 8, tonumber(ARGV[7]))
forget(id, lapsed)
settle_record(9, KEYS[16], KEYS[17], KEYS[18], id, ARGV[5], tonumber(ARGV[4]), now, old)
count_finished(KEYS[8], KEYS[19], now)
redis.call('SET', KEYS[7], '1', 'PX', MEMO_TTL)
return 1
"""

# The final writes of a batch of tasks in one call (the worker's write-behind batch, see
# `_batch.py`); each item is exactly a FINISH.
# KEYS: 1-6 state, 7 finished ring, 8 per-minute finished ring, 9-15 index block, then per item
#       (ack memo, record, done, name index), then spent memos.
# ARGV: ttl_ms, number of spent memos, ni, then per item: id, worker, token, status, number of
#       record fields n, then the record's n field/value pairs.
# -> per item: 1 written, 2 already written by this lease (a re-sent finish), 0 lease lost.
FINISH_MANY = """
local ttl, ni = tonumber(ARGV[1]), tonumber(ARGV[3])
allow_oom()
local now = now_ms()
local out, written, seen = {}, 0, {}
-- The items' writes to shared keys (queue state, indexes) go out once per key at the end.
local g = gather()
local a = 4
for i = 0, ni - 1 do
  local k = 16 + 4 * i
  local id, nf = ARGV[a], tonumber(ARGV[a + 4])
  local first = a + 5
  a = first + 2 * nf
  local rec, done, name_key = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  if seen[id] then
    out[i + 1] = 2  -- the same lease twice in one call: its queue state goes only at the end
  elseif redis.call('HGET', KEYS[2], id) ~= ARGV[first - 4] .. '\\n' .. ARGV[first - 3] then
    if redis.call('EXISTS', KEYS[k]) == 1 then out[i + 1] = 2 else out[i + 1] = 0 end
  else
    seen[id] = true
    local status = ARGV[first - 2]
    local old, lapsed = write_record(rec, KEYS[5], id, first, nf)
    -- What forget(id, lapsed) does, gathered.
    g:add('ZREM', KEYS[1], id)
    for j = 2, 4 do g:add('HDEL', KEYS[j], id) end
    g:add('HDEL', KEYS[6], id)
    if lapsed then redis.call('HDEL', KEYS[5], id, 'c:' .. id, 's:' .. id) end
    local score = settle_ttl(rec, done, status, ttl, now)
    if old == 'new' or old == 'process' or FINAL[old] then
      index_gathered(g, 9, name_key, id, status, score, old)
    else
      index_record(9, name_key, id, status, score, old)
    end
    redis.call('SET', KEYS[k], '1', 'PX', MEMO_TTL)
    written = written + 1
    out[i + 1] = 1
  end
end
g:flush()
if written > 0 then
  count_finished(KEYS[7], KEYS[8], now, written)
  -- As FINISH: spent memos go only once a write passed its fence (a re-sent finish that finds
  -- its own memo must still find it).
  drop_spent(tonumber(ARGV[2]))
end
return out
"""

# KEYS: 1-6 state, 7 seq, 8 ready, 9 delayed, 10 wake, 11-17 index block, 18 record.
# ARGV: id, worker, token, eta_ms|''.  -> 1 handed back, 0 lease lost.
REQUEUE = """
local id = ARGV[1]
if redis.call('HGET', KEYS[2], id) ~= ARGV[2] .. '\\n' .. ARGV[3] then return 0 end
allow_oom()
local now = now_ms()
redis.call('ZREM', KEYS[1], id)
redis.call('HDEL', KEYS[2], id)
local eta = tonumber(ARGV[4])
if eta and eta > now then
  redis.call('ZADD', KEYS[9], eta, id)
else
  redis.call('ZADD', KEYS[8], ready_score(KEYS[7], priority_of(redis.call('HGET', KEYS[4], id))),
             id)
end
wake(KEYS[10])
if redis.call('HGET', KEYS[18], 'status') == 'process' then
  redis.call('HSET', KEYS[18], 'status', 'new', 'updated_at', stamp(now))
  index_record(11, false, id, 'new', live_score())
end
return 1
"""

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
      if redis.call('EXISTS', rec) == 1 then
        local s = stamp(now)
        redis.call('HSET', rec, 'status', 'cancel', 'updated_at', s, 'finished_at', s)
        if string.sub(flagged, 1, 1) == '1' then
          redis.call('HSET', rec, 'cancel_reason', string.sub(flagged, 2))
        end
        settle_record(10, rec, done, name_key, id, 'cancel', ttl, now)
      end
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
  if redis.call('EXISTS', rec) == 1 then
    local s = stamp(now)
    redis.call('HSET', rec, 'status', 'cancel', 'updated_at', s, 'finished_at', s)
    if ARGV[2] == '1' then redis.call('HSET', rec, 'cancel_reason', ARGV[3]) end
    local name_key = false
    if ARGV[6] == '1' then name_key = KEYS[18] end
    settle_record(9, rec, KEYS[17], name_key, id, 'cancel', tonumber(ARGV[4]), now)
  end
  redis.call('ZREM', KEYS[7], id)
  redis.call('ZREM', KEYS[8], id)
  forget(id)
  return 'cancelled'
end
if redis.call('EXISTS', rec) == 1 then return 'final' end
return 'unknown'
"""

# Administration (stats, CLI, web view).

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

# KEYS: 1-6 state, 7 ready, 8 delayed, 9-15 index block, then (record, done) per id.
# ARGV: ttl_ms, reason, ids...  -> tasks removed (still queued: a claimed one is left alone).
PURGE_QUEUE = """
local now = now_ms()
local s = stamp(now)
local n = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local rec, done = KEYS[16 + 2 * (i - 3)], KEYS[17 + 2 * (i - 3)]
  if redis.call('ZREM', KEYS[7], id) + redis.call('ZREM', KEYS[8], id) > 0 then
    forget(id)
    if redis.call('EXISTS', rec) == 1 then
      redis.call('HSET', rec, 'status', 'cancel', 'cancel_reason', ARGV[2], 'updated_at', s,
                 'finished_at', s)
      settle_record(9, rec, done, false, id, 'cancel', tonumber(ARGV[1]), now)
    end
    n = n + 1
  end
end
return n
"""

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
_CONFIG_PRELUDE = """
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


def _with_helpers(body: str) -> str:
    """`body` after the prelude definitions it uses, directly or through each other.

    Redis runs a script's whole source on every call, so every helper defined is a closure
    built per call: sending only the used ones took ENQUEUE from about 8 to 5 us in Redis.
    The prelude is split at blank lines; each block defines the locals it starts with.
    """
    blocks = [b for b in (_PRELUDE + "\n" + _CONFIG_PRELUDE).split("\n\n") if b.strip()]
    defined = [set(_DEFINES.findall(block)) for block in blocks]
    used: set[int] = set()
    text = body
    while True:
        found = {
            i
            for i, names in enumerate(defined)
            if i not in used and any(re.search(rf"\b{n}\b", text) for n in names)
        }
        if not found:
            break
        used |= found
        text += "".join(blocks[i] for i in found)
    return "".join(blocks[i].strip("\n") + "\n\n" for i in sorted(used)) + body.lstrip("\n")


_DEFINES = re.compile(r"^local (?:function )?(\w+)", re.MULTILINE)

SOURCES: dict[str, str] = {
    name: _with_helpers(body)
    for name, body in {
        "ENQUEUE": ENQUEUE,
        "CLAIM": CLAIM,
        "HEARTBEAT": HEARTBEAT,
        "STARTED": STARTED,
        "FINISH": FINISH,
        "FINISH_MANY": FINISH_MANY,
        "REQUEUE": REQUEUE,
        "REAP_SCAN": REAP_SCAN,
        "REAP": REAP,
        "DEAD_LETTER": DEAD_LETTER,
        "CANCEL": CANCEL,
        "STATS": STATS,
        "RETRY_DEAD": RETRY_DEAD,
        "PURGE_DEAD": PURGE_DEAD,
        "PURGE_QUEUE": PURGE_QUEUE,
        "PUT": PUT,
        "UPDATE": UPDATE,
        "UPDATE_MANY": UPDATE_MANY,
        "COUNT": COUNT,
        "PRUNE": PRUNE,
        "CONFIG_SET": CONFIG_SET,
        "CONFIG_GET_ALL": CONFIG_GET_ALL,
        "CONFIG_DELETE": CONFIG_DELETE,
    }.items()
}
"""Full source of each script, prelude included, by name."""
