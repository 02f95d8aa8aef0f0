-- settle.lua: charges what one reservation used and ends its hold, atomically and once.
--
-- A held reservation leaves the lease set and its whole amount leaves `reserved`. An expired
-- one was released already, so nothing is released again. Then the actual cost is charged as
-- far as the budget has room:
--   charged = min(actual, max(limit - spent - reserved - overrun, 0))
-- The rest is added to the budget's `overrun` counter, not charged, so spent never passes the
-- limit; overrun is cost the provider billed past it, so it takes room like spend does.
-- A settled reservation keeps its numbers, and a repeated settle returns them unchanged.
--
-- Money is integer nano-dollars (1 USD = 10^9), every amount below 2^53. The script reads no
-- clock.
--
-- KEYS[1]  budget hash        spendfuse:{NAME}:budget, fields limit, spent, reserved, overrun
-- KEYS[2]  lease sorted set   spendfuse:{NAME}:leases
-- KEYS[3]  reservation hash   spendfuse:{NAME}:res:ID, fields amount, state (held, expired or
--                             settled), and after a settle charged, released, overrun
--
-- ARGV[1]  reservation id, the ID in KEYS[3]
-- ARGV[2]  actual cost, nano-dollars; -1 charges the amount held instead
-- ARGV[3]  how long the settled reservation hash is kept, ms
--
-- Returns {outcome, charged, released, overrun}, all integers, amounts in nano-dollars:
--   outcome  1  settled by this call: released is the hold given back now (the whole amount
--               when the reservation was held, 0 when its lease had expired).
--   outcome  2  settled before: the stored numbers, and nothing changed.
--   outcome  0  unknown reservation (KEYS[3] does not exist): the other fields are 0.
-- Errors: none of its own.

local budget_key = KEYS[1]
local leases_key = KEYS[2]
local reservation_key = KEYS[3]

local reservation_id = ARGV[1]
local actual_nano = tonumber(ARGV[2])
local retention_ms = tonumber(ARGV[3])

-- Formats an integer-valued number for a Redis argument without an exponent. Zero is written
-- as "0", because "%.0f" writes negative zero as "-0", which HINCRBY rejects.
local function int(n)
  if n == 0 then
    return "0"
  end
  return string.format("%.0f", n)
end

local stored = redis.call("HMGET", reservation_key, "state", "amount", "charged", "released",
  "overrun")
local state = stored[1]
if not state then
  return {0, 0, 0, 0}
end
if state == "settled" then
  return {2, tonumber(stored[3]) or 0, tonumber(stored[4]) or 0, tonumber(stored[5]) or 0}
end

local amount = tonumber(stored[2]) or 0
local released = 0
if state == "held" then
  redis.call("ZREM", leases_key, reservation_id)
  redis.call("HINCRBY", budget_key, "reserved", int(-amount))
  released = amount
end

if actual_nano < 0 then
  actual_nano = amount
end

local limit = tonumber(redis.call("HGET", budget_key, "limit")) or 0
local spent = tonumber(redis.call("HGET", budget_key, "spent")) or 0
local reserved = tonumber(redis.call("HGET", budget_key, "reserved")) or 0
local overrun_before = tonumber(redis.call("HGET", budget_key, "overrun")) or 0
local room = limit - spent - reserved - overrun_before
if room < 0 then
  room = 0
end

local charged = actual_nano
if charged > room then
  charged = room
end
local overrun = actual_nano - charged

redis.call("HINCRBY", budget_key, "spent", int(charged))
redis.call("HINCRBY", budget_key, "overrun", int(overrun))
redis.call("HSET", reservation_key, "state", "settled", "charged", int(charged),
  "released", int(released), "overrun", int(overrun))
redis.call("PEXPIRE", reservation_key, int(retention_ms))
return {1, charged, released, overrun}
