-- budget.lua: reads, writes, deletes a budget or resets one of its windows, and returns the
-- budget's state in each window's current period.
--
-- The sidecar places common.lua in front of this file. First the script releases the
-- hierarchy's expired leases, exactly as reserve.lua does, so `reserved` never counts a hold
-- whose lease has passed. Spent, reserved and overrun keep their values unless a window is
-- reset.
--
-- Money is integer nano-dollars (1 USD = 10^9), every amount below 2^53. Time comes from
-- redis.call("TIME") plus ARGV[4].
--
-- KEYS[1]  lease sorted set   PREFIX .. "leases"
-- KEYS[2]  budget hash        PREFIX .. "budget:" .. NAME, fields limit:KIND, shadow
--
-- ARGV[1]  key prefix of the hierarchy, "spendfuse:{ROOT}:"
-- ARGV[2]  how long an expired reservation hash is kept, ms
-- ARGV[3]  UTC offset of window boundaries, ms
-- ARGV[4]  clock shift added to the server time, ms; 0 except in tests
-- ARGV[5]  action:
--            "get"     only read.
--            "put"     ARGV[6] is "1" for shadow mode, "0" to enforce, "" to keep the mode;
--                      ARGV[7] is "replace" to drop the windows not listed, or "merge";
--                      ARGV[8..] are pairs of window kind and limit in nano-dollars. Creates the
--                      budget when it is missing.
--            "delete"  removes the budget and its lifetime window; the other window hashes
--                      expire with their periods. Returns the state before the removal.
--            "reset"   ARGV[6] is a window kind: its current period's spent and overrun become
--                      0 and its alerts may fire again, while reserved keeps the live holds.
--
-- Returns {found, shadow, then for each window of the budget, in WINDOW_KINDS order: kind
-- index, limit, spent, reserved, overrun, period start ms, period end ms (-1 for lifetime)}.
--   found  1  the budget exists (always after "put").
--   found  0  no budget of that name: nothing else follows, and nothing was written.
-- Errors: "spendfuse: unknown window kind" for a kind that WINDOW_KINDS does not list, and
-- "spendfuse: budget has no such window" for a reset of a window the budget lacks.

local leases_key = KEYS[1]
local budget_key = KEYS[2]

local prefix = ARGV[1]
local retention_ms = tonumber(ARGV[2])
local offset_ms = tonumber(ARGV[3])
local shift_ms = tonumber(ARGV[4])
local action = ARGV[5]

local name = string.sub(budget_key, #prefix + 8)
local now_ms = clock_ms(shift_ms)
release_expired(prefix, now_ms, retention_ms)

local function is_kind(kind)
  for _, known in ipairs(WINDOW_KINDS) do
    if known == kind then
      return true
    end
  end
  return false
end

-- Returns the reply for the budget as stored now.
local function state_reply()
  local fields = {"shadow"}
  for _, kind in ipairs(WINDOW_KINDS) do
    table.insert(fields, "limit:" .. kind)
  end
  local stored = redis.call("HMGET", budget_key, unpack(fields))
  local reply = {1, 0}
  if stored[1] == "1" then
    reply[2] = 1
  end
  local found = false
  for kind_index, kind in ipairs(WINDOW_KINDS) do
    local limit = tonumber(stored[kind_index + 1])
    if limit then
      found = true
      local start_ms, end_ms = window_period(kind, now_ms, offset_ms)
      local key = window_key(prefix, name, kind, now_ms, offset_ms)
      local spent, reserved, overrun = window_amounts(key)
      for _, value in ipairs({kind_index, limit, spent, reserved, overrun, start_ms, end_ms}) do
        table.insert(reply, value)
      end
    end
  end
  if not found then
    return {0}
  end
  return reply
end

if action == "put" then
  for i = 8, #ARGV, 2 do
    if not is_kind(ARGV[i]) then
      return redis.error_reply("spendfuse: unknown window kind")
    end
  end
  if ARGV[7] == "replace" then
    for _, kind in ipairs(WINDOW_KINDS) do
      redis.call("HDEL", budget_key, "limit:" .. kind)
    end
  end
  for i = 8, #ARGV, 2 do
    redis.call("HSET", budget_key, "limit:" .. ARGV[i], ARGV[i + 1])
  end
  if ARGV[6] ~= "" then
    redis.call("HSET", budget_key, "shadow", ARGV[6])
  end
  redis.call("HSETNX", budget_key, "shadow", "0")
elseif action == "delete" then
  local before = state_reply()
  local lifetime_key = window_key(prefix, name, "lifetime", now_ms, offset_ms)
  redis.call("DEL", budget_key, lifetime_key)
  return before
elseif action == "reset" then
  local kind = ARGV[6]
  if not is_kind(kind) then
    return redis.error_reply("spendfuse: unknown window kind")
  end
  if not redis.call("HGET", budget_key, "limit:" .. kind) then
    return redis.error_reply("spendfuse: budget has no such window")
  end
  local key, end_ms = window_key(prefix, name, kind, now_ms, offset_ms)
  redis.call("HSET", key, "spent", "0", "overrun", "0")
  -- A reset window starts over, so its alerts may fire again.
  for _, field in ipairs(redis.call("HKEYS", key)) do
    if string.sub(field, 1, 8) == "alerted:" then
      redis.call("HDEL", key, field)
    end
  end
  if end_ms >= 0 and redis.call("PTTL", key) == -1 then
    redis.call("PEXPIREAT", key, int(end_ms + 3600000))
  end
end

return state_reply()
