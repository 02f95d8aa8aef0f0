-- common.lua: helpers that the sidecar places in front of reserve.lua, settle.lua and
-- budget.lua, so that the three scripts compute clocks, windows and lease releases the same way.
--
-- Windows. A budget has a limit per window kind: minute, hour, day, week, month or lifetime.
-- The current period of a kind is computed from redis.call("TIME") plus a fixed UTC offset in
-- minutes (the sidecar's configured time zone). Weeks start on Monday, as ISO weeks do, and
-- months are calendar months. A period's spend lives in its own hash, keyed by the period's
-- start, which expires once the period has ended and a margin has passed, so no job resets
-- windows. The lifetime window has one period that never expires.
--
-- Keys. Every key of one hierarchy carries the hash tag of its root scope: PREFIX is
-- "spendfuse:{ROOT}:" and the sidecar passes it as an argument.
--   PREFIX .. "budget:" .. NAME          hash  limit:KIND (nano-dollars), shadow (0 or 1)
--   PREFIX .. "window:" .. NAME .. ":" .. KIND .. ":" .. START   hash  spent, reserved, overrun
--   PREFIX .. "leases"                   sorted set  reservation id, score lease deadline (ms)
--   PREFIX .. "res:" .. ID               hash  amount, state, windows
-- A reservation's `windows` field lists each window it holds, one per line, as
-- "WINDOW_KEY<TAB>BUDGET_KEY<TAB>KIND". Budget names contain no control characters.

-- Window kinds, in the order that replies use (index 1 to 6).
local WINDOW_KINDS = {"minute", "hour", "day", "week", "month", "lifetime"}

local MINUTE_MS = 60000
local HOUR_MS = 3600000
local DAY_MS = 86400000

-- Formats an integer-valued number for a Redis argument without an exponent.
local function int(n)
  -- "%.0f" writes negative zero as "-0", which HINCRBY rejects.
  if n == 0 then
    return "0"
  end
  return string.format("%.0f", n)
end

-- Returns the server's time in ms plus `shift_ms`, which only tests set.
local function clock_ms(shift_ms)
  local time = redis.call("TIME")
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) + shift_ms
end

-- Returns year, month (1-12) of day `days` counted from 1970-01-01, in the proleptic
-- Gregorian calendar. Eras of 400 years (146097 days) start on March 1st, which puts the leap
-- day at the end of each era year.
local function civil_from_days(days)
  local shifted = days + 719468
  local era = math.floor(shifted / 146097)
  local day_of_era = shifted - era * 146097
  local year_of_era = math.floor((day_of_era - math.floor(day_of_era / 1460)
    + math.floor(day_of_era / 36524) - math.floor(day_of_era / 146096)) / 365)
  local day_of_year = day_of_era
    - (365 * year_of_era + math.floor(year_of_era / 4) - math.floor(year_of_era / 100))
  local march_month = math.floor((5 * day_of_year + 2) / 153)
  local month = march_month + 3
  if month > 12 then
    month = month - 12
  end
  local year = year_of_era + era * 400
  if month <= 2 then
    year = year + 1
  end
  return year, month
end

-- Returns the day number, counted from 1970-01-01, of the first day of `month` in `year`.
local function days_from_month(year, month)
  if month <= 2 then
    year = year - 1
  end
  local era = math.floor(year / 400)
  local year_of_era = year - era * 400
  local march_month = (month + 9) % 12
  local day_of_year = math.floor((153 * march_month + 2) / 5)
  local day_of_era = year_of_era * 365 + math.floor(year_of_era / 4)
    - math.floor(year_of_era / 100) + day_of_year
  return era * 146097 + day_of_era - 719468
end

-- Returns the current period of window kind `kind` as (start, end) in UTC ms. `now_ms` is UTC,
-- and `offset_ms` moves day, week and month boundaries to local midnight. The lifetime window
-- returns (0, -1).
local function window_period(kind, now_ms, offset_ms)
  local local_ms = now_ms + offset_ms
  local start_ms
  local end_ms
  if kind == "minute" then
    start_ms = math.floor(local_ms / MINUTE_MS) * MINUTE_MS
    end_ms = start_ms + MINUTE_MS
  elseif kind == "hour" then
    start_ms = math.floor(local_ms / HOUR_MS) * HOUR_MS
    end_ms = start_ms + HOUR_MS
  elseif kind == "day" then
    start_ms = math.floor(local_ms / DAY_MS) * DAY_MS
    end_ms = start_ms + DAY_MS
  elseif kind == "week" then
    local day = math.floor(local_ms / DAY_MS)
    -- 1970-01-01 was a Thursday, so day + 3 counts from a Monday.
    local monday = day - (day + 3) % 7
    start_ms = monday * DAY_MS
    end_ms = start_ms + 7 * DAY_MS
  elseif kind == "month" then
    local year, month = civil_from_days(math.floor(local_ms / DAY_MS))
    local next_year, next_month = year, month + 1
    if next_month > 12 then
      next_year, next_month = year + 1, 1
    end
    start_ms = days_from_month(year, month) * DAY_MS
    end_ms = days_from_month(next_year, next_month) * DAY_MS
  else
    return 0, -1
  end
  return start_ms - offset_ms, end_ms - offset_ms
end

-- Returns the key of the current period of budget `name`'s window `kind`, and its end in ms
-- (-1 for lifetime).
local function window_key(prefix, name, kind, now_ms, offset_ms)
  local start_ms, end_ms = window_period(kind, now_ms, offset_ms)
  return prefix .. "window:" .. name .. ":" .. kind .. ":" .. int(start_ms), end_ms
end

-- Splits a reservation's `windows` field into {window_key, budget_key, kind} entries.
local function parse_windows(text)
  local entries = {}
  for line in string.gmatch(text or "", "[^\n]+") do
    local window, budget, kind = string.match(line, "^([^\t]+)\t([^\t]+)\t([^\t]+)$")
    if window then
      table.insert(entries, {window, budget, kind})
    end
  end
  return entries
end

-- Releases every lease of the hierarchy whose deadline is at or before `now_ms`: its amount
-- leaves `reserved` of each window it held, and its hash is marked expired and kept
-- `retention_ms`.
local function release_expired(prefix, now_ms, retention_ms)
  local leases_key = prefix .. "leases"
  local expired = redis.call("ZRANGEBYSCORE", leases_key, "-inf", int(now_ms))
  for _, expired_id in ipairs(expired) do
    local expired_key = prefix .. "res:" .. expired_id
    local stored = redis.call("HMGET", expired_key, "state", "amount", "windows")
    if stored[1] == "held" then
      local amount = tonumber(stored[2]) or 0
      for _, entry in ipairs(parse_windows(stored[3])) do
        if redis.call("EXISTS", entry[1]) == 1 then
          redis.call("HINCRBY", entry[1], "reserved", int(-amount))
        end
      end
      redis.call("HSET", expired_key, "state", "expired")
      redis.call("PEXPIRE", expired_key, int(retention_ms))
    end
    redis.call("ZREM", leases_key, expired_id)
  end
end

-- Returns the numbers of a window hash: spent, reserved, overrun.
local function window_amounts(key)
  local stored = redis.call("HMGET", key, "spent", "reserved", "overrun")
  return tonumber(stored[1]) or 0, tonumber(stored[2]) or 0, tonumber(stored[3]) or 0
end
