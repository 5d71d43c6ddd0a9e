-- POST /api/v1/members/lookup-by-code: the till scans a random member's card code (the
-- member app's rotating QR code). Argument 6 is a file of one fresh code a line, line n for
-- member n (http_bench.py writes it before each run: a code lives 60 s). Every answer must
-- be 200: the others are counted.
package.path = os.getenv("BENCH_WRK_DIR") .. "/?.lua;" .. package.path
require("common")

function init(args)
  load_args(args)
  headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}
  codes = {}
  for line in io.lines(args[6]) do
    codes[#codes + 1] = line
  end
  unexpected_status = 0
end

function request()
  local code = codes[math.random(#codes)]
  return wrk.format("POST", "/api/v1/members/lookup-by-code", headers,
    string.format('{"code": "%s"}', code))
end

function response(status, _headers, _body)
  if status ~= 200 then
    unexpected_status = unexpected_status + 1
  end
end
