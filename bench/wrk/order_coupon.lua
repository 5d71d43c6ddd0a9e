-- POST /api/v1/orders paying with a coupon: order.lua's orders (1-3 random lines, the
-- member named by id), each paying with a fresh coupon of the order template (500 fen off
-- any of these baskets; bench/seed.py). Argument 6 is a file of the unused order coupons,
-- one "<member id> <code>" a line (http_bench.py writes it before each run), argument 7 the
-- number of wrk threads: thread t takes lines t, t + threads, t + 2 threads, ..., so no
-- coupon is offered twice. Every answer must be 201: the others are counted.
package.path = os.getenv("BENCH_WRK_DIR") .. "/?.lua;" .. package.path
require("common")
require("order") -- the catalogue and random_lines()

local OFF_FEN = 500 -- bench/common.py ORDER_COUPON_OFF_FEN

function init(args)
  load_args(args)
  headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}
  coupons = {}
  for line in io.lines(args[6]) do
    local member, code = line:match("^(%S+) (%S+)$")
    coupons[#coupons + 1] = {member, code}
  end
  thread_count = tonumber(args[7])
  unexpected_status = 0
end

function request()
  counter = counter + 1
  local j = tid + thread_count * (counter - 1)
  local coupon = coupons[(j - 1) % #coupons + 1] -- past the end: refused, and counted
  local lines, total = random_lines()
  local body = string.format(
    '{"channel": "pos", "external_id": "%s-%d-%d", "member": {"id": "%s"}, "lines": [%s], ' ..
    '"paid_at": "%s", "payment": {"cash_fen": %d, "points_used": 0, ' ..
    '"coupons": [{"code": "%s", "amount_fen": %d}]}}',
    prefix, tid, counter, coupon[1], lines, os.date("!%Y-%m-%dT%H:%M:%SZ"), total - OFF_FEN,
    coupon[2], OFF_FEN)
  return wrk.format("POST", "/api/v1/orders", headers, body)
end

function response(status, _headers, _body)
  if status ~= 201 then
    unexpected_status = unexpected_status + 1
  end
end
