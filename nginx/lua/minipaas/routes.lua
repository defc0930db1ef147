-- minipaas' routing table, in nginx's shared memory: each app's live web containers (`host:port ...`).
--
-- minipaas changes an app's entry through the control server (PUT/DELETE /routes?app=NAME on a unix
-- socket only root reaches) and keeps the same table in a file, which `load` reads at every start and
-- reload of nginx; `balance` picks a container for each request. A deploy changes one entry: no
-- reload, and once the PUT is answered every new request goes to the new containers.
local M = {}
local routes = ngx.shared.minipaas_routes
-- Peers whose connection just failed (refused, reset, timed out): left out for FAIL_SECONDS unless every peer of
-- the app failed, as nginx's own upstream servers are by default (max_fails=1 fail_timeout=10s). Without it each
-- request would try a dead container or node again until the routing table drops it, and a POST that nginx had
-- already sent on a kept-alive connection to it is not retried.
local failed = ngx.shared.minipaas_failed
local FAIL_SECONDS = 10

-- init_by_lua: the table as minipaas last wrote it (one line per app: `app host:port host:port`).
function M.load(path)
    local seen = {}
    local file = io.open(path, "r")
    if file then
        for line in file:lines() do
            local app, peers = line:match("^(%S+)%s*(.-)%s*$")
            if app then
                routes:set(app, peers)
                seen[app] = true
            end
        end
        file:close()
    end
    -- Entries the file no longer has go; never a flush, which would leave running workers an empty table.
    for _, app in ipairs(routes:get_keys(0)) do
        if not seen[app] then
            routes:delete(app)
        end
    end
end

local turn = 0  -- round robin, per worker
local parsed = {}  -- per worker: app -> {text, peers}, so a route is parsed once, not per request

local function peers_of(app)
    local text = routes:get(app)
    if not text then
        return nil
    end
    local hit = parsed[app]
    if hit and hit.text == text then  -- LuaJIT interns strings: an O(1) comparison
        return hit.peers
    end
    local peers = {}
    for peer in text:gmatch("%S+") do
        local host, port = peer:match("^(.+):(%d+)$")
        if host then
            peers[#peers + 1] = {host, tonumber(port), peer}
        end
    end
    parsed[app] = {text = text, peers = peers}
    return peers
end

-- balancer_by_lua: a container of the vhost's app ($minipaas_app); a failed connection moves on to
-- the next one (nginx's proxy_next_upstream) and leaves the failed one out for a while, and a request
-- whose app has none fails (the vhost's 503).
function M.balance()
    local balancer = require "ngx.balancer"
    local ctx = ngx.ctx
    local peers = ctx.minipaas_peers
    if not peers then
        peers = peers_of(ngx.var.minipaas_app)
        if not peers or #peers == 0 then
            return ngx.exit(ngx.ERROR)
        end
        ctx.minipaas_peers = peers
        turn = turn + 1
        ctx.minipaas_next = turn
        balancer.set_more_tries(#peers)
    else
        failed:set(ctx.minipaas_peer[3], true, FAIL_SECONDS)  -- called again: the last try failed
    end
    local peer
    for _ = 1, #peers do  -- round robin over the peers that have not just failed; all have: the next one
        local candidate = peers[(ctx.minipaas_next % #peers) + 1]
        ctx.minipaas_next = ctx.minipaas_next + 1
        peer = peer or candidate
        if not failed:get(candidate[3]) then
            peer = candidate
            break
        end
    end
    ctx.minipaas_peer = peer
    local ok, err = balancer.set_current_peer(peer[1], peer[2])
    if not ok then
        ngx.log(ngx.ERR, "minipaas: cannot route to ", peer[1], ":", peer[2], ": ", err)
        return ngx.exit(ngx.ERROR)
    end
end

-- content_by_lua on the control socket: PUT the app's peers (the body), DELETE them, or GET them.
function M.control()
    local app = ngx.var.arg_app
    if not app or not app:match("^[a-z][a-z0-9-]*$") then
        ngx.status = 400
        return ngx.say("expected ?app=NAME")
    end
    local method = ngx.req.get_method()
    if method == "GET" then
        return ngx.say(routes:get(app) or "")
    elseif method == "DELETE" then
        routes:delete(app)
    elseif method == "PUT" then
        ngx.req.read_body()
        local body = ngx.req.get_body_data() or ""
        if not body:match("^[%w%.:%[%] ]*$") then
            ngx.status = 400
            return ngx.say("expected host:port ...")
        end
        local ok, err = routes:set(app, body)
        if not ok then
            ngx.status = 507
            return ngx.say(err)
        end
    else
        ngx.status = 405
        return ngx.say("PUT, DELETE or GET")
    end
    ngx.status = 204
end

return M
