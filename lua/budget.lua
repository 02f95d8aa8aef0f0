-- budget.lua: returns a budget's state, after setting its limit when one is given.
--
-- First releases the budget's expired leases, exactly as reserve.lua does, so `reserved` never
-- counts a hold whose lease has passed. A new limit replaces the old one and creates the
-- budget when it is missing. Spent, reserved and overrun keep their values.
--
-- Money is integer nano-dollars (1 USD = 10^9), every amount below 2^53. Time comes from
-- redis.call("TIME").
--
-- KEYS[1]  budget hash        spendfuse:{NAME}:budget, fields limit, spent, reserved, overrun
-- KEYS[2]  lease sorted set   spendfuse:{NAME}:leases, member reservation id, score deadline (ms)
--
-- ARGV[1]  key prefix of this budget's reservation hashes, spendfuse:{NAME}:res:
-- ARGV[2]  how long an expired reservation hash is kept, ms
-- ARGV[3]  new limit, nano-dollars, or "" to only read
--
-- Returns {found, limit, spent, reserved, overrun}, all integers, amounts in nano-dollars:
--   found  1  the budget exists (always after a new limit).
--   found  0  no budget of that name: the other fields are 0 and nothing was written.
-- Errors: none of its own.

local budget_key = KEYS[1]
local leases_key = KEYS[2]

local reservation_prefix = ARGV[1]
local retention_ms = tonumber(ARGV[2])
local new_limit = ARGV[3]

-- Formats an integer-valued number for a Redis argument without an exponent. Zero is written
-- as "0", because "%.0f" writes negative zero as "-0", which HINCRBY rejects.
local function int(n)
  if n == 0 then
    return "0"
  end
  return string.format("%.0f", n)
end

local time = redis.call("TIME")
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- Release expired leases. The same block is in reserve.lua, so keep the two identical.
local expired = redis.call("ZRANGEBYSCORE", leases_key, "-inf", int(now_ms))
for _, expired_id in ipairs(expired) do
  local expired_key = reservation_prefix .. expired_id
  local state = redis.call("HGET", expired_key, "state")
  if state == "held" then
    local amount = tonumber(redis.call("HGET", expired_key, "amount")) or 0
    redis.call("HINCRBY", budget_key, "reserved", int(-amount))
    redis.call("HSET", expired_key, "state", "expired")
    redis.call("PEXPIRE", expired_key, int(retention_ms))
  end
  redis.call("ZREM", leases_key, expired_id)
end

if new_limit ~= "" then
  redis.call("HSET", budget_key, "limit", new_limit)
  redis.call("HSETNX", budget_key, "spent", "0")
  redis.call("HSETNX", budget_key, "reserved", "0")
  redis.call("HSETNX", budget_key, "overrun", "0")
end

local stored = redis.call("HMGET", budget_key, "limit", "spent", "reserved", "overrun")
local limit = tonumber(stored[1])
if limit == nil then
  return {0, 0, 0, 0, 0}
end
return {1, limit, tonumber(stored[2]) or 0, tonumber(stored[3]) or 0, tonumber(stored[4]) or 0}
