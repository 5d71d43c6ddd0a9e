-- GET /healthz: no key, no database. The framework's own ceiling under the same load
-- (uvicorn, Litestar and the request-id middleware): what is left for the application.
package.path = os.getenv("BENCH_WRK_DIR") .. "/?.lua;" .. package.path
require("common")

function init(args)
  load_args(args)
end

function request()
  return wrk.format("GET", "/healthz")
end
