-- Shared by the wrk scripts: arguments, member list, and a JSON summary at the end.
-- Arguments (after `--`): members file, API key, share of orders naming the member by
-- phone (percent), external id prefix, and "1" when the members hold the member price (the
-- orders' feeding lines claim it). Member n is line n of the members file; its phone is
-- 13800000000 + n (bench/common.py).

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function load_args(args)
  ids = {}
  for line in io.lines(args[1]) do
    ids[#ids + 1] = line
  end
  key = args[2]
  phone_pct = tonumber(args[3] or "0")
  prefix = args[4] or "bench"
  member_price = (args[5] or "0") == "1"
  counter = 0
  math.randomseed(os.time() * 1000 + tid * 7919)
  for _ = 1, 10 do math.random() end
end

function phone_of(n)
  return string.format("%d", 13800000000 + n)
end

-- A script that checks each answer's status (order_coupon.lua: every order must be 201)
-- counts the others in its threads' `unexpected_status`; they are reported with the errors.
function unexpected_statuses()
  local count, checked = 0, false
  for _, thread in ipairs(threads) do
    local n = thread:get("unexpected_status")
    if n ~= nil then
      count, checked = count + n, true
    end
  end
  if checked then
    return string.format(', "errors_unexpected_status": %d', count)
  end
  return ""
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"mean_us": %.1f, "p50_us": %d, "p75_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "errors_connect": %d, "errors_read": %d, "errors_write": %d, ' ..
    '"errors_status": %d, "errors_timeout": %d%s}\n',
    summary.requests, summary.duration, summary.bytes, latency.mean,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout,
    unexpected_statuses()))
end
