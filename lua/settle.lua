-- settle.lua: charges what one reservation used into the windows it was held in, and ends its
-- hold, atomically and once.
--
-- The sidecar places common.lua in front of this file. A held reservation leaves the lease
-- set and its amount leaves `reserved` of each window it holds. An expired one was released
-- already, so nothing is released again. Then each window listed by the reservation is
-- charged as far as it has room: charged = min(actual, max(limit - spent - reserved - overrun,
-- 0)), and the rest goes to that window's `overrun`, so spent never passes a limit. These are the
-- periods the reservation was made in, even when the settle comes after their end. A window
-- whose hash has expired or whose budget lost that window's limit is not charged. A settled
-- reservation keeps its numbers, and a repeated settle returns them unchanged.
--
-- Alerts: for each percentage in ARGV[4], a window whose spent reaches that share of its limit
-- with this settle gets the field `alerted:PCT` set, and the reply lists the alert. The field
-- lives in the window's hash, so each threshold fires once per period.
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
-- ARGV[4]  alert thresholds, percent of a window's limit, comma-separated such as "50,80,100",
--          or "" for none
-- ARGV[5]  "1" to cancel a request that never reached the provider: when no reservation of
--          that id exists yet, a settled one with zero amounts is written, so that a reserve
--          still in flight with that id fails instead of holding money no settle releases
--
-- Returns {outcome, charged, released, overrun}, all integers, amounts in nano-dollars.
-- charged is the minimum amount that a window took (0 when no window was charged), and overrun
-- the maximum amount that a window recorded as overrun:
--   outcome  1  settled by this call: released is the hold given back now (the whole amount
--               when the reservation was held, 0 when its lease had expired).
--   outcome  2  settled before: the stored numbers, and nothing changed.
--   outcome  0  unknown reservation (KEYS[2] does not exist): the other fields are 0.
--   outcome  3  cancelled before its reserve (ARGV[5] is "1"): the other fields are 0.
--   After the four integers of outcome 1 follows one string per alert that fired:
--   "NAME<TAB>KIND<TAB>PERCENT<TAB>SPENT<TAB>LIMIT".
-- Errors: none of its own.

local leases_key = KEYS[1]
local reservation_key = KEYS[2]

local reservation_id = ARGV[1]
local actual_nano = tonumber(ARGV[2])
local retention_ms = tonumber(ARGV[3])
local cancel = ARGV[5] == "1"
local thresholds = {}
for percent in string.gmatch(ARGV[4] or "", "%d+") do
  table.insert(thresholds, tonumber(percent))
end

local stored = redis.call("HMGET", reservation_key, "state", "amount", "charged", "released",
  "overrun", "windows")
local state = stored[1]
if not state then
  if cancel then
    redis.call("HSET", reservation_key, "state", "settled", "amount", "0", "charged", "0",
      "released", "0", "overrun", "0")
    redis.call("PEXPIRE", reservation_key, int(retention_ms))
    return {3, 0, 0, 0}
  end
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
local alerts = {}
local windows_charged = 0
for _, entry in ipairs(windows) do
  local window, budget_key, kind = entry[1], entry[2], entry[3]
  local limit = tonumber(redis.call("HGET", budget_key, "limit:" .. kind))
  if limit and redis.call("EXISTS", window) == 1 then
    local spent, reserved, window_overrun = window_amounts(window)
    local room = limit - spent - reserved - window_overrun
    if room < 0 then
      room = 0
    end
    local window_charged = actual_nano
    if window_charged > room then
      window_charged = room
    end
    windows_charged = windows_charged + 1
    redis.call("HINCRBY", window, "spent", int(window_charged))
    redis.call("HINCRBY", window, "overrun", int(actual_nano - window_charged))
    local spent_now = spent + window_charged
    for _, percent in ipairs(thresholds) do
      -- NOTE: above 2^53 / 100 nano-dollars (about 90,000 USD) these products are doubles that
      -- can be off by one nano-dollar, so a threshold may fire one nano-dollar early or late.
      if limit > 0 and spent_now * 100 >= limit * percent
          and redis.call("HSETNX", window, "alerted:" .. percent, "1") == 1 then
        local name = string.match(budget_key, "}:budget:(.*)$") or budget_key
        table.insert(alerts, name .. "\t" .. kind .. "\t" .. percent .. "\t" .. int(spent_now)
          .. "\t" .. int(limit))
      end
    end
    if window_charged < charged then
      charged = window_charged
    end
    if actual_nano - window_charged > overrun then
      overrun = actual_nano - window_charged
    end
  end
end

-- With no window left to charge (budgets deleted since the reserve), nothing was charged.
if windows_charged == 0 then
  charged = 0
end

redis.call("HSET", reservation_key, "state", "settled", "charged", int(charged),
  "released", int(released), "overrun", int(overrun))
redis.call("PEXPIRE", reservation_key, int(retention_ms))
local reply = {1, charged, released, overrun}
for _, alert in ipairs(alerts) do
  table.insert(reply, alert)
end
return reply
