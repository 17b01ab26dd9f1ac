"""The queue's Lua scripts: every change that touches more than one key is one script,
so it is atomic however many workers on however many machines run it.

Per queue (names in :mod:`herald.names`): ``ready`` and ``urgent`` (waiting jobs,
scored by priority then arrival), ``leases`` (running jobs, scored by lease
deadline), ``active`` (the capped subset of ``leases``: the max-active
semaphore), ``delayed`` (scored by due time), ``wake`` (a list idle workers
block on), ``settings`` (hash: paused, max_active, immediate). ``job:{id}`` is a
hash: kind, queue, score, urgent, attempts, max_attempts, token, worker, cancel.
"""

from __future__ import annotations

# Shared prelude: wake idle workers (bounded list of tokens).
_WAKE = """
local function wake(key)
  redis.call('LPUSH', key, '1')
  redis.call('LTRIM', key, 0, 63)
end
"""

ENQUEUE = (
    _WAKE
    + """
-- KEYS: ready, job, wake, arrivals, queues, delayed, urgent
-- ARGV: id, kind, queue, priority, max_attempts, due_ms (0: now), urgent (1/0)
-- A job that already exists (waiting or running) is left alone: overwriting its
-- hash would reset the fencing token of the worker running it.
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local arrival = redis.call('INCR', KEYS[4])
local score = (100 - tonumber(ARGV[4])) * 1099511627776 + arrival
redis.call('HSET', KEYS[2], 'kind', ARGV[2], 'queue', ARGV[3], 'score', score,
           'attempts', 0, 'max_attempts', ARGV[5], 'token', '', 'urgent', ARGV[7])
redis.call('SADD', KEYS[5], ARGV[3])
if tonumber(ARGV[6]) > 0 then
  redis.call('ZADD', KEYS[6], ARGV[6], ARGV[1])
  return score
end
redis.call('ZADD', ARGV[7] == '1' and KEYS[7] or KEYS[1], 'NX', score, ARGV[1])
wake(KEYS[3])
return score
"""
)

CLAIM = """
-- KEYS: ready, leases, settings, urgent, active
-- ARGV: deadline_ms, count, job_prefix, worker, nonce, now_ms, window_open (1/0)
-- Urgent (immediate-mode) jobs first, outside the window and the cap; then ready
-- jobs while the queue is open, at most max_active of them running at once
-- across every worker. Pause stops both.
local settings = redis.call('HMGET', KEYS[3], 'paused', 'max_active', 'immediate')
if settings[1] == '1' then return {} end
local want = tonumber(ARGV[2])
local out = {}
local function take(set, n, capped)
  local popped = redis.call('ZPOPMIN', set, n)
  for i = 1, #popped, 2 do
    local id = popped[i]
    local key = ARGV[3] .. id
    if redis.call('EXISTS', key) == 1 then
      -- A random token (not a counter): unique even after Redis lost and re-made the job.
      local token = ARGV[5] .. ':' .. #out
      local attempts = redis.call('HINCRBY', key, 'attempts', 1)
      redis.call('HSET', key, 'token', token, 'worker', ARGV[4])
      redis.call('ZADD', KEYS[2], ARGV[1], id)
      if capped then redis.call('ZADD', KEYS[5], ARGV[1], id) end
      local f = redis.call('HMGET', key, 'kind', 'max_attempts')
      table.insert(out, {id, token, attempts, f[1], f[2]})
    end
  end
end
take(KEYS[4], want, false)
local immediate = settings[3] == '1'
if #out < want and (immediate or ARGV[7] == '1') then
  local n = want - #out
  local cap = (not immediate) and tonumber(settings[2]) or nil
  if cap then
    -- Leases that ran out (their worker died) no longer hold a slot.
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', ARGV[6])
    n = math.min(n, cap - redis.call('ZCARD', KEYS[5]))
  end
  if n > 0 then take(KEYS[1], n, cap ~= nil) end
end
return out
"""

HEARTBEAT = """
-- KEYS: leases, active   ARGV: deadline_ms, job_prefix, id1, token1, id2, token2, ...
-- Per lease: 0 lost to another worker, 1 renewed, 2 renewed and cancel requested.
local answers = {}
for i = 3, #ARGV, 2 do
  local key = ARGV[2] .. ARGV[i]
  local f = redis.call('HMGET', key, 'token', 'cancel')
  if f[1] == ARGV[i + 1] and redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i])
    redis.call('ZADD', KEYS[2], 'XX', ARGV[1], ARGV[i])
    table.insert(answers, f[2] == '1' and 2 or 1)
  else
    table.insert(answers, 0)
  end
end
return answers
"""

COMPLETE = """
-- KEYS: leases, active   ARGV: job_prefix, id1, token1, id2, token2, ...
-- Removes each finished job whose lease is still held; 1 per job removed, else 0.
local done = {}
for i = 2, #ARGV, 2 do
  local key = ARGV[1] .. ARGV[i]
  if redis.call('HGET', key, 'token') == ARGV[i + 1]
     and redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('DEL', key)
    table.insert(done, 1)
  else
    table.insert(done, 0)
  end
end
return done
"""

RELEASE = (
    _WAKE
    + """
-- KEYS: leases, ready, job, wake, delayed, urgent, active
-- ARGV: id, token, due_ms (0: now), refund (1: the run did not count as an attempt)
if redis.call('HGET', KEYS[3], 'token') ~= ARGV[2] then return 0 end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[7], ARGV[1])
if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[3], 'attempts', -1) end
if tonumber(ARGV[3]) > 0 then
  redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
  return 1
end
local f = redis.call('HMGET', KEYS[3], 'score', 'urgent')
redis.call('ZADD', f[2] == '1' and KEYS[6] or KEYS[2], f[1], ARGV[1])
wake(KEYS[4])
return 1
"""
)

MOVE_DUE = (
    _WAKE
    + """
-- Moves members of a deadline-scored set whose time has come back to waiting:
-- expired leases (reap) and due delayed jobs (promote).
-- KEYS: source, ready, wake, urgent, active   ARGV: now_ms, job_prefix
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[5], id)
  local f = redis.call('HMGET', ARGV[2] .. id, 'score', 'urgent')
  if f[1] then redis.call('ZADD', f[2] == '1' and KEYS[4] or KEYS[2], f[1], id) end
end
if #due > 0 then wake(KEYS[3]) end
return due
"""
)

CANCEL = """
-- KEYS: ready, urgent, delayed, job   ARGV: id
-- 1: it was waiting and is gone; 2: it is running and its worker will be told
-- (at its next heartbeat); 0: Redis does not hold it.
local removed = redis.call('ZREM', KEYS[1], ARGV[1]) + redis.call('ZREM', KEYS[2], ARGV[1])
                + redis.call('ZREM', KEYS[3], ARGV[1])
if removed > 0 then
  redis.call('DEL', KEYS[4])
  return 1
end
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('HSET', KEYS[4], 'cancel', '1')
  return 2
end
return 0
"""
