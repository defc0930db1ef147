-- wrk script (tests/test_zero_downtime.py, bench/deploy_under_load.py): alternate GET / and POST /echo
-- (a small text body) on keep-alive connections. The -H headers from the command line (Host: <app>.paas.test) are
-- copied into the POST's own header table, so both kinds of request reach the app's vhost.
local n = 0

local function with_defaults(extra)
  local headers = {}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  for name, value in pairs(extra) do headers[name] = value end
  return headers
end

request = function()
  n = n + 1
  if n % 2 == 0 then
    return wrk.format("POST", "/echo", with_defaults({ ["Content-Type"] = "text/plain" }), "payload " .. n)
  end
  return wrk.format("GET", "/")
end
