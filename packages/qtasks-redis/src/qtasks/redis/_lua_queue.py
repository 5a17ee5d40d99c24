"""Scripts of a task's way through the queue: enqueue, claim, lease heartbeats and start
marks, final writes, requeue."""

from __future__ import annotations

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
local g = gather(#new_items == 1)
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
local g = gather(#cands == 1)
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
local g = gather(ni == 1)
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

# KEYS: 1-6 state, 7 seq, 8 ready, 9 delayed, 10 wake, 11-17 index block, 18 record, 19 done,
#       20 name index.
# ARGV: id, worker, token, eta_ms|'', ttl_ms, has name.
# -> 1 handed back, 2 finished as cancelled (asked to cancel while held), 0 lease lost.
REQUEUE = """
local id = ARGV[1]
if redis.call('HGET', KEYS[2], id) ~= ARGV[2] .. '\\n' .. ARGV[3] then return 0 end
allow_oom()
local now = now_ms()
local flag = redis.call('HGET', KEYS[6], id)
if flag then
  -- A stop hands back what its worker holds; a task asked to cancel meanwhile must not run
  -- again (REAP does the same for a worker that died).
  local name_key = false
  if ARGV[6] == '1' then name_key = KEYS[20] end
  cancel_record(11, KEYS[18], KEYS[19], name_key, id, flag, tonumber(ARGV[5]), now)
  forget(id)
  return 2
end
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
