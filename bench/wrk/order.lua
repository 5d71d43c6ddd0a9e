-- POST /api/v1/orders: a unique external id per request, a random existing member (by id,
-- or by phone for phone_pct percent of orders), 1-3 lines from a small catalogue; feeding lines
-- at the member price (95%), claimed as the till would after a preview.
package.path = os.getenv("BENCH_WRK_DIR") .. "/?.lua;" .. package.path
require("common")

catalogue = {
  {"MILK-900", "Formula 900g", "feeding", 25800},
  {"MILK-400", "Formula 400g", "feeding", 12800},
  {"DIAPER-L", "Diapers L 52", "care", 9900},
  {"WIPE-80", "Wipes 80", "care", 1990},
  {"TOY-CAR", "Toy car", "toys", 8900},
  {"ROMPER-73", "Romper 73cm", "clothing", 6900},
}

function init(args)
  load_args(args)
  headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}
end

-- One line of `item` (a catalogue entry), as JSON, and what it pays. Shared with the
-- coupon scripts (coupons.lua, order_coupon.lua), which send the same lines.
function line_json(item, qty)
  local paid = item[4] * qty
  local claim = ""
  -- The member price every member holds (bench/seed.py), when told so: not for order_hot's
  -- one member (a few runs would use up a quota of 10,000 orders a day), nor for the
  -- batch copy's members (mixed_bench.py), who hold no benefits.
  if item[3] == "feeding" and member_price then
    local off = paid - math.floor(paid * 95 / 100)
    paid = paid - off
    claim = string.format(', "benefit_code": "member-price", "discount_fen": %d', off)
  end
  return string.format(
    '{"sku": "%s", "name": "%s", "category": "%s", "quantity": %d, ' ..
    '"unit_price_fen": %d, "paid_fen": %d%s}', item[1], item[2], item[3], qty, item[4], paid,
    claim), paid
end

-- 1-3 random lines (quantity 1-2): their JSON and their total.
function random_lines()
  local lines, total = {}, 0
  for i = 1, math.random(3) do
    local item = catalogue[math.random(#catalogue)]
    local json, paid = line_json(item, math.random(2))
    total = total + paid
    lines[i] = json
  end
  return table.concat(lines, ", "), total
end

function request()
  counter = counter + 1
  local n = math.random(#ids)
  local member
  if math.random(100) <= phone_pct then
    member = '{"phone": "' .. phone_of(n) .. '"}'
  else
    member = '{"id": "' .. ids[n] .. '"}'
  end
  local lines, total = random_lines()
  local body = string.format(
    '{"channel": "pos", "external_id": "%s-%d-%d", "member": %s, "lines": [%s], ' ..
    '"paid_at": "%s", "payment": {"cash_fen": %d, "points_used": 0}}',
    prefix, tid, counter, member, lines, os.date("!%Y-%m-%dT%H:%M:%SZ"), total)
  return wrk.format("POST", "/api/v1/orders", headers, body)
end
