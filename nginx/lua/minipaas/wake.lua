-- Apps that sleep when idle (minipaas/running/sleeping.py): their route is `sleep` (routes.lua), no container runs.
--
-- A request to a sleeping app is held here (content_by_lua of the vhost's @minipaas_wake, where ngx.sleep is
-- allowed; `pick` runs in set_by_lua, where it is not) until minipaas has started, health-checked and routed the
-- app's live release again, then goes on to the app (@minipaas_woken: the same proxying, method and body kept).
-- The first such request asks for the wake: an `add` to the shared dict is the lock, so that 20 requests at once
-- make one wake. minipaas' watcher learns of it by long-polling the control server (GET /wakes, answered as soon as
-- a wake is wanted), so nginx's workers need no socket of minipaas, and says how it went (POST /wakes?app=NAME).
--
-- The time of each app's last request (GET /idle) is what tells the watcher that an app is idle: the metrics'
-- flush writes it (metrics.lua), at most 4 times a second per worker, never per request.
local routes = require "minipaas.routes"
local M = {}
local wakes = ngx.shared.minipaas_wakes
local idle = ngx.shared.minipaas_idle
local HOLD = 30         -- seconds a held request waits for its app to wake, then 503
local POLL = 0.05       -- seconds between two looks at the route (a held request) or at the wakes (the long poll)
local LONG_POLL = 20    -- seconds GET /wakes waits for a wake to be wanted when none is, at most
local FAILED_FOR = 10   -- seconds the requests of an app whose wake failed get its 503 at once, before a new try
local WAKE_TTL = 120    -- a wake nobody finished (the watcher was killed) may be asked again after this

-- metrics.lua's flush: the app served a request (its last one at most FLUSH seconds before `now`).
function M.seen(app, now)
    if idle then  -- an nginx configured by an older minipaas has no such dict
        idle:set(app, now)
    end
end

local function unavailable(app, why)
    ngx.status = 503
    ngx.header.content_type = "text/plain"
    ngx.header["Retry-After"] = "10"
    ngx.say(app, " was asleep (idle) and could not be woken: ", why)
    ngx.say("`minipaas ps ", app, "` says why; `minipaas ps:start ", app, "` wakes it by hand.")
    return ngx.exit(503)
end

-- content_by_lua of @minipaas_wake: hold the request until the app is awake (then `target`, the named location
-- that proxies it), its wake failed, or HOLD seconds passed.
function M.hold(target)
    local app = ngx.var.minipaas_app
    local deadline = ngx.now() + HOLD
    local failed = wakes:get("failed " .. app)
    if not failed then
        wakes:add("wake " .. app, "wanted", WAKE_TTL)  -- the first request asks; the others find it asked
    end
    while not failed do
        local entry = routes.entry_of(app)
        if not (entry and entry.sleeping) then  -- awake (or unrouted meanwhile: the app's location says so)
            return ngx.exec(target)
        end
        if ngx.now() >= deadline then
            return unavailable(app, "it was not awake within " .. HOLD .. " s")
        end
        ngx.sleep(POLL)
        failed = wakes:get("failed " .. app)
    end
    return unavailable(app, failed)
end

-- content_by_lua of the control server's /wakes. GET: the apps whose wake is wanted, one a line, as soon as there
-- is one (each handed out once), or nothing after ?wait=SECONDS (default and most: LONG_POLL). POST ?app=NAME:
-- its wake ended; an empty body: it is awake, else why it failed (its held requests get that in their 503).
function M.control()
    local method = ngx.req.get_method()
    if method == "GET" then
        local wait = math.min(tonumber(ngx.var.arg_wait) or LONG_POLL, LONG_POLL)
        local deadline = ngx.now() + wait
        while true do
            local out = {}
            for _, key in ipairs(wakes:get_keys(0)) do
                local app = key:match("^wake (%S+)$")
                if app and wakes:get(key) == "wanted" then
                    wakes:replace(key, "taken", WAKE_TTL)
                    out[#out + 1] = app .. "\n"
                end
            end
            -- A worker on its way out (a reload, or an orphan a new master stops) answers at once: a poll it held
            -- would hold its exit (and the start of nginx that waits for it) for up to LONG_POLL seconds.
            if #out > 0 or ngx.now() >= deadline or ngx.worker.exiting() then
                ngx.header.content_type = "text/plain"
                return ngx.print(out)
            end
            ngx.sleep(POLL)
        end
    elseif method == "POST" then
        local app = ngx.var.arg_app
        if not app or not app:match("^[a-z][a-z0-9-]*$") then
            ngx.status = 400
            return ngx.say("expected ?app=NAME")
        end
        ngx.req.read_body()
        local why = ngx.req.get_body_data() or ""
        if why ~= "" then
            wakes:set("failed " .. app, why, FAILED_FOR)
        else
            wakes:delete("failed " .. app)
        end
        wakes:delete("wake " .. app)
        ngx.status = 204
        return
    end
    ngx.status = 405
    return ngx.say("GET or POST")
end

-- content_by_lua of the control server's /idle: `now SECONDS`, then `APP SECONDS` a line: when each app that
-- served a request since nginx started last did.
function M.idle()
    local out = {"now ", string.format("%.3f", ngx.now()), "\n"}
    for _, app in ipairs(idle:get_keys(0)) do
        out[#out + 1] = app .. " " .. string.format("%.3f", idle:get(app) or 0) .. "\n"
    end
    ngx.header.content_type = "text/plain"
    ngx.print(out)
end

return M
