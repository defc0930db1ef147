-- wrk script: alternate GET / and POST /echo with a small body, on keep-alive connections.
local n = 0
request = function()
  n = n + 1
  if n % 2 == 0 then
    return wrk.format("POST", "/echo", { ["Content-Type"] = "text/plain" }, "payload " .. n)
  end
  return wrk.format("GET", "/")
end
