-- reserve.lua: holds the worst-case cost of one LLM request in every window of every budget
-- scope of the request, atomically: all windows hold it, or none does.
--
-- The sidecar places common.lua in front of this file. First the script releases the expired
-- leases of the hierarchy. When a loop check is requested, the same body hash from the leaf
-- scope seen ARGV[13] times within the last ARGV[14] ms stops the request before any money is
-- held. Then the room of the request is the least `limit - spent - reserved - overrun` over the current
-- periods of every enforcing window. It grants the full output allowance when the prompt and
-- that allowance fit, else the largest output token count per choice that fits, if that is at
-- least the minimum, or denies. Windows of a budget in shadow mode never deny: the script
-- holds the amount there too and reports the first shadow window that would have denied.
-- Scopes with no budget are skipped.
--
-- Money is integer nano-dollars (1 USD = 10^9). Lua numbers in Redis are doubles, so every
-- amount and every intermediate product below stays under 2^53. The ARGV bounds make sure of
-- that, and the sidecar checks them before calling. Time comes from redis.call("TIME") plus
-- ARGV[11].
--
-- KEYS[1]  lease sorted set   PREFIX .. "leases"
-- KEYS[2]  reservation hash   PREFIX .. "res:" .. ID, created here for a grant
-- KEYS[3..] budget hashes     PREFIX .. "budget:" .. NAME, one per scope, leaf first
--
-- ARGV[1]  reservation id, the ID in KEYS[2]
-- ARGV[2]  key prefix of the hierarchy, "spendfuse:{ROOT}:"
-- ARGV[3]  prompt cost, nano-dollars
-- ARGV[4]  output price per token over all choices, pico-dollars; at most (2^53 - 1) / 1000
-- ARGV[5]  max output tokens per choice
-- ARGV[6]  min output tokens per choice; at most ARGV[5]
-- ARGV[7]  cost of ARGV[5] output tokens per choice, nano-dollars: ceil(ARGV[5] * ARGV[4] / 1000);
--          ARGV[3] + ARGV[7] is at most 2^53 - 1
-- ARGV[8]  lease duration, ms
-- ARGV[9]  how long an expired reservation hash is kept, ms
-- ARGV[10] UTC offset of window boundaries, ms
-- ARGV[11] clock shift added to the server time, ms; 0 except in tests
-- ARGV[12] hex SHA-256 of the request body for the loop check, or "" for no check
-- ARGV[13] most identical bodies allowed within ARGV[14]
-- ARGV[14] loop check window, ms
--
-- Returns {outcome, output_tokens, reserved, limit, remaining, scope, window, shadow_scope,
-- shadow_window}, all integers. `scope` is a 1-based index into KEYS[3..] and `window` a
-- 1-based index into WINDOW_KINDS; 0 means none.
--   outcome  1  granted: output_tokens per choice are held, reserved is the amount held in
--               nano-dollars in each window. limit and remaining (after the hold) are those of
--               the enforcing window with the least room, named by scope and window; all three
--               are 0 when every window is in shadow mode.
--   outcome  0  denied: scope and window name the window that ran out, limit is its limit and
--               remaining what it had before this request (0 when it is over).
--   outcome -1  no scope has a budget: the other fields are 0.
--   outcome -2  loop check: the body was seen ARGV[13] times within ARGV[14] ms already;
--               limit is ARGV[13], scope is 1 (the leaf), the rest 0.
--   For outcome 1, shadow_scope and shadow_window name the first shadow window whose room is
--   below the amount held, which would have lowered or denied the request.
-- Errors: "spendfuse: reservation id exists" when KEYS[2] exists already. Nothing is written.

local leases_key = KEYS[1]
local reservation_key = KEYS[2]

local reservation_id = ARGV[1]
local prefix = ARGV[2]
local prompt_nano = tonumber(ARGV[3])
local per_token_pico = tonumber(ARGV[4])
local max_output_tokens = tonumber(ARGV[5])
local min_output_tokens = tonumber(ARGV[6])
local max_output_nano = tonumber(ARGV[7])
local lease_ms = tonumber(ARGV[8])
local retention_ms = tonumber(ARGV[9])
local offset_ms = tonumber(ARGV[10])
local shift_ms = tonumber(ARGV[11])
local body_hash = ARGV[12]
local loop_max = tonumber(ARGV[13])
local loop_window_ms = tonumber(ARGV[14])

-- Largest amount Lua numbers in Redis hold exactly.
local MAX_AMOUNT = 9007199254740991

-- How long a window hash outlives its period, so that a late settle or lease release finds it.
local WINDOW_MARGIN_MS = 3600000

-- Exact floor(a / b) for integers 0 <= a < 2^53 and 0 < b < 2^53. The double division can be
-- off by one near 2^53, so the quotient is corrected against products.
local function floor_div(a, b)
  local q = math.floor(a / b)
  while q * b > a do
    q = q - 1
  end
  while (q + 1) * b <= a do
    q = q + 1
  end
  return q
end

local function ceil_div(a, b)
  local q = floor_div(a, b)
  if q * b < a then
    q = q + 1
  end
  return q
end

-- ceil(tokens * price / 1000) without forming tokens * price, which can pass 2^53. With
-- tokens = thousands * 1000 + rest it is thousands * price + ceil(rest * price / 1000), and
-- rest * price < 1000 * price stays under 2^53 by the bound on ARGV[4].
local function output_cost(tokens, price)
  local thousands = floor_div(tokens, 1000)
  local rest = tokens - thousands * 1000
  return thousands * price + ceil_div(rest * price, 1000)
end

-- Returns the output tokens per choice that `room` pays for after the prompt, or -1 when it
-- cannot pay for the minimum.
local function grantable_tokens(room)
  if prompt_nano + max_output_nano <= room then
    return max_output_tokens
  end
  local available = room - prompt_nano
  if available < 0 or per_token_pico <= 0 then
    return -1
  end
  -- Largest t with ceil(t * per_token_pico / 1000) <= available, that is
  -- t = floor(available * 1000 / per_token_pico), computed from a quotient and a remainder
  -- so that no product passes 2^53. Because the full allowance does not fit, t is below
  -- max_output_tokens.
  local q = floor_div(available, per_token_pico)
  local r = available - q * per_token_pico
  local t = q * 1000 + floor_div(r * 1000, per_token_pico)
  if t > max_output_tokens then
    t = max_output_tokens
  end
  while t > 0 and output_cost(t, per_token_pico) > available do
    t = t - 1
  end
  if t < min_output_tokens then
    return -1
  end
  return t
end

if redis.call("EXISTS", reservation_key) == 1 then
  return redis.error_reply("spendfuse: reservation id exists")
end

local now_ms = clock_ms(shift_ms)
release_expired(prefix, now_ms, retention_ms)

-- Loop check on the leaf scope, before any money is held.
if body_hash ~= "" then
  local leaf_name = string.sub(KEYS[3], #prefix + 8)
  local repeat_key = prefix .. "repeat:" .. leaf_name .. ":" .. body_hash
  redis.call("ZREMRANGEBYSCORE", repeat_key, "-inf", int(now_ms - loop_window_ms))
  if redis.call("ZCARD", repeat_key) >= loop_max then
    return {-2, 0, 0, loop_max, 0, 1, 0, 0, 0}
  end
  redis.call("ZADD", repeat_key, int(now_ms), reservation_id)
  redis.call("PEXPIRE", repeat_key, int(loop_window_ms))
end

-- Every window of every scope's budget, with its current period and room.
local windows = {}
for scope = 3, #KEYS do
  local budget_key = KEYS[scope]
  local name = string.sub(budget_key, #prefix + 8)
  local fields = {"shadow"}
  for _, kind in ipairs(WINDOW_KINDS) do
    table.insert(fields, "limit:" .. kind)
  end
  local stored = redis.call("HMGET", budget_key, unpack(fields))
  local shadow = stored[1] == "1"
  for kind_index, kind in ipairs(WINDOW_KINDS) do
    local limit = tonumber(stored[kind_index + 1])
    if limit then
      local key, end_ms = window_key(prefix, name, kind, now_ms, offset_ms)
      -- Overrun is cost a provider billed past the limit, so it takes room like spend.
      local spent, reserved, overrun = window_amounts(key)
      table.insert(windows, {
        scope = scope - 2, kind_index = kind_index, kind = kind, key = key,
        budget_key = budget_key, end_ms = end_ms, limit = limit,
        room = limit - spent - reserved - overrun, shadow = shadow,
      })
    end
  end
end
if #windows == 0 then
  return {-1, 0, 0, 0, 0, 0, 0, 0, 0}
end

local binding = nil
for _, window in ipairs(windows) do
  if not window.shadow and (binding == nil or window.room < binding.room) then
    binding = window
  end
end
local room = MAX_AMOUNT
if binding then
  room = binding.room
end

local output_tokens = grantable_tokens(room)
if output_tokens < 0 then
  local remaining = room
  if remaining < 0 then
    remaining = 0
  end
  return {0, 0, 0, binding.limit, remaining, binding.scope, binding.kind_index, 0, 0}
end
local amount = prompt_nano + output_cost(output_tokens, per_token_pico)
if output_tokens == max_output_tokens then
  amount = prompt_nano + max_output_nano
end

local shadow_scope, shadow_kind = 0, 0
local lines = {}
for _, window in ipairs(windows) do
  if window.shadow and shadow_scope == 0 and window.room < amount then
    shadow_scope, shadow_kind = window.scope, window.kind_index
  end
  redis.call("HINCRBY", window.key, "reserved", int(amount))
  if window.end_ms >= 0 then
    redis.call("PEXPIREAT", window.key, int(window.end_ms + lease_ms + WINDOW_MARGIN_MS))
  end
  table.insert(lines, window.key .. "\t" .. window.budget_key .. "\t" .. window.kind)
end
redis.call("HSET", reservation_key, "amount", int(amount), "state", "held",
  "windows", table.concat(lines, "\n"))
redis.call("ZADD", leases_key, int(now_ms + lease_ms), reservation_id)

if binding == nil then
  return {1, output_tokens, amount, 0, 0, 0, 0, shadow_scope, shadow_kind}
end
return {1, output_tokens, amount, binding.limit, binding.room - amount, binding.scope,
  binding.kind_index, shadow_scope, shadow_kind}
