-- settle.lua: charges what one reservation used into the windows it was held in, and ends its
-- hold, atomically and once.
--
-- The sidecar places common.lua in front of this file. A held reservation leaves the lease
-- set and its amount leaves `reserved` of each window it holds. An expired one was released
-- already, so nothing is released again. Then each window listed by the reservation is
-- charged as far as it has room: charged = min(actual, max(limit - spent - reserved, 0)), and
-- the rest goes to that window's `overrun`, so spent never passes a limit. These are the
-- periods the reservation was made in, even when the settle comes after their end. A window
-- whose hash has expired or whose budget lost that window's limit is not charged. A settled
-- reservation keeps its numbers, and a repeated settle returns them unchanged.
--
-- Money is integer nano-dollars (1 USD = 10^9), every amount below 2^53. The script reads no
-- clock.
--
-- KEYS[1]  lease sorted set   PREFIX .. "leases"
-- KEYS[2]  reservation hash   PREFIX .. "res:" .. ID, fields amount, state (held, expired or
--                             settled), windows, and after a settle charged, released, overrun
--
-- ARGV[1]  reservation id, the ID in KEYS[2]
-- ARGV[2]  actual cost, nano-dollars; -1 charges the amount held instead
-- ARGV[3]  how long the settled reservation hash is kept, ms
--
-- Returns {outcome, charged, released, overrun}, all integers, amounts in nano-dollars.
-- charged is the least amount that any window took and overrun the largest amount that any
-- window recorded as overrun:
--   outcome  1  settled by this call: released is the hold given back now (the whole amount
--               when the reservation was held, 0 when its lease had expired).
--   outcome  2  settled before: the stored numbers, and nothing changed.
--   outcome  0  unknown reservation (KEYS[2] does not exist): the other fields are 0.
-- Errors: none of its own.

local leases_key = KEYS[1]
local reservation_key = KEYS[2]

local reservation_id = ARGV[1]
local actual_nano = tonumber(ARGV[2])
local retention_ms = tonumber(ARGV[3])

local stored = redis.call("HMGET", reservation_key, "state", "amount", "charged", "released",
  "overrun", "windows")
local state = stored[1]
if not state then
  return {0, 0, 0, 0}
end
if state == "settled" then
  return {2, tonumber(stored[3]) or 0, tonumber(stored[4]) or 0, tonumber(stored[5]) or 0}
end

local amount = tonumber(stored[2]) or 0
local windows = parse_windows(stored[6])
local released = 0
if state == "held" then
  redis.call("ZREM", leases_key, reservation_id)
  for _, entry in ipairs(windows) do
    if redis.call("EXISTS", entry[1]) == 1 then
      redis.call("HINCRBY", entry[1], "reserved", int(-amount))
    end
  end
  released = amount
end

if actual_nano < 0 then
  actual_nano = amount
end

local charged = actual_nano
local overrun = 0
for _, entry in ipairs(windows) do
  local window, budget_key, kind = entry[1], entry[2], entry[3]
  local limit = tonumber(redis.call("HGET", budget_key, "limit:" .. kind))
  if limit and redis.call("EXISTS", window) == 1 then
    local spent, reserved = window_amounts(window)
    local room = limit - spent - reserved
    if room < 0 then
      room = 0
    end
    local window_charged = actual_nano
    if window_charged > room then
      window_charged = room
    end
    redis.call("HINCRBY", window, "spent", int(window_charged))
    redis.call("HINCRBY", window, "overrun", int(actual_nano - window_charged))
    if window_charged < charged then
      charged = window_charged
    end
    if actual_nano - window_charged > overrun then
      overrun = actual_nano - window_charged
    end
  end
end

redis.call("HSET", reservation_key, "state", "settled", "charged", int(charged),
  "released", int(released), "overrun", int(overrun))
redis.call("PEXPIRE", reservation_key, int(retention_ms))
return {1, charged, released, overrun}
