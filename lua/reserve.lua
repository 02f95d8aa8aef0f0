-- reserve.lua: reserves the worst-case cost of one LLM request against a budget, atomically.
--
-- First releases the budget's expired leases: each lease whose deadline has passed gives its
-- amount back to `reserved`, and its reservation hash is marked `expired`. Then it grants the
-- full output allowance when spent + reserved + cost <= limit. Otherwise it grants the largest
-- output token count per choice that still fits, if that is at least the minimum, or denies.
--
-- Money is integer nano-dollars (1 USD = 10^9). Lua numbers in Redis are doubles, so every
-- amount and every intermediate product below stays under 2^53. The ARGV bounds make sure of
-- that, and the sidecar checks them before calling. Time comes from redis.call("TIME").
--
-- KEYS[1]  budget hash        spendfuse:{NAME}:budget, fields limit, spent, reserved, overrun
-- KEYS[2]  lease sorted set   spendfuse:{NAME}:leases, member reservation id, score deadline (ms)
-- KEYS[3]  reservation hash   spendfuse:{NAME}:res:ID, created here for a grant
--
-- ARGV[1]  reservation id, the ID in KEYS[3]
-- ARGV[2]  key prefix of this budget's reservation hashes, spendfuse:{NAME}:res:
-- ARGV[3]  prompt cost, nano-dollars
-- ARGV[4]  output price per token over all choices, pico-dollars; at most (2^53 - 1) / 1000
-- ARGV[5]  max output tokens per choice
-- ARGV[6]  min output tokens per choice; at most ARGV[5]
-- ARGV[7]  cost of ARGV[5] output tokens per choice, nano-dollars: ceil(ARGV[5] * ARGV[4] / 1000);
--          ARGV[3] + ARGV[7] is at most 2^53 - 1
-- ARGV[8]  lease duration, ms
-- ARGV[9]  how long an expired reservation hash is kept, ms
--
-- Returns {outcome, output_tokens, reserved, limit, remaining}, all integers:
--   outcome  1  granted: output_tokens per choice are held, reserved is the amount held in
--               nano-dollars, remaining = limit - spent - reserved - overrun after the hold.
--   outcome  0  denied: output_tokens and reserved are 0, remaining is what the budget had
--               before this request (0 when spent + reserved is above the limit).
--   outcome -1  unknown budget (KEYS[1] has no limit field): the other fields are 0.
-- Errors: "spendfuse: reservation id exists" when KEYS[3] exists already. Nothing is written.

local budget_key = KEYS[1]
local leases_key = KEYS[2]
local reservation_key = KEYS[3]

local reservation_id = ARGV[1]
local reservation_prefix = ARGV[2]
local prompt_nano = tonumber(ARGV[3])
local per_token_pico = tonumber(ARGV[4])
local max_output_tokens = tonumber(ARGV[5])
local min_output_tokens = tonumber(ARGV[6])
local max_output_nano = tonumber(ARGV[7])
local lease_ms = tonumber(ARGV[8])
local retention_ms = tonumber(ARGV[9])

-- Formats an integer-valued number for a Redis argument without an exponent. Zero is written
-- as "0", because "%.0f" writes negative zero as "-0", which HINCRBY rejects.
local function int(n)
  if n == 0 then
    return "0"
  end
  return string.format("%.0f", n)
end

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

if redis.call("EXISTS", reservation_key) == 1 then
  return redis.error_reply("spendfuse: reservation id exists")
end

local time = redis.call("TIME")
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- Release expired leases. The same block is in budget.lua, so keep the two identical.
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

local limit = tonumber(redis.call("HGET", budget_key, "limit"))
if limit == nil then
  return {-1, 0, 0, 0, 0}
end
local spent = tonumber(redis.call("HGET", budget_key, "spent")) or 0
local reserved = tonumber(redis.call("HGET", budget_key, "reserved")) or 0
-- Overrun is cost the provider billed past the limit, so it takes room like spend does.
local overrun = tonumber(redis.call("HGET", budget_key, "overrun")) or 0
local room = limit - spent - reserved - overrun

local output_tokens = -1
local amount = 0
if prompt_nano + max_output_nano <= room then
  output_tokens = max_output_tokens
  amount = prompt_nano + max_output_nano
else
  local available = room - prompt_nano
  if available >= 0 and per_token_pico > 0 then
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
    if t >= min_output_tokens then
      output_tokens = t
      amount = prompt_nano + output_cost(t, per_token_pico)
    end
  end
end

if output_tokens < 0 then
  local remaining = room
  if remaining < 0 then
    remaining = 0
  end
  return {0, 0, 0, limit, remaining}
end

redis.call("HINCRBY", budget_key, "reserved", int(amount))
redis.call("HSET", reservation_key, "amount", int(amount), "state", "held")
redis.call("ZADD", leases_key, int(now_ms + lease_ms), reservation_id)
return {1, output_tokens, amount, limit, room - amount}
