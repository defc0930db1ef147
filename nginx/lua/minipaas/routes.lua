-- minipaas' routing table, in nginx's shared memory: each app's versions (releases), each with a weight (its
-- share of new clients) and its live web containers: `12=90 host:port host:port 13=10 host:port`. A line of
-- an older minipaas (`host:port ...`, no marker) is one version, release 0, weight 100. An app that sleeps (it was
-- idle: no container runs) is `sleep`: its requests are held while minipaas wakes it (wake.lua).
--
-- minipaas changes an app's entry through the control server (PUT/DELETE /routes?app=NAME on a unix
-- socket only root reaches) and keeps the same table in a file, which `load` reads at every start and
-- reload of nginx. `pick` (rewrite phase) chooses the request's version and the cookie that tells a client of an
-- app with several versions which one it got, `balance` a container of it. A deploy
-- changes one entry: no reload, and once the PUT is answered every new request follows the new entry.
local M = {}
local routes = ngx.shared.minipaas_routes
-- Peers whose connection just failed (refused, reset, timed out): left out for FAIL_SECONDS unless every peer of
-- the version failed, as nginx's own upstream servers are by default (max_fails=1 fail_timeout=10s). Without it
-- each request would try a dead container or node again until the routing table drops it, and a POST that nginx
-- had already sent on a kept-alive connection to it is not retried.
local failed = ngx.shared.minipaas_failed
local FAIL_SECONDS = 10
local COOKIE = "mp_release="
local COOKIE_ATTRIBUTES = "; Path=/; HttpOnly; SameSite=Lax"
-- Which share of the weights a connection falls in: a hash of its serial and this salt, new at every start of
-- nginx, so that the order connections arrive in says nothing about where they go.
local SALT = string.format(":%x", math.floor(ngx.now() * 1000) % 0x7fffffff)
local crc32 = ngx.crc32_short

-- An entry's text → {versions = {...} in release order, by_release = {["12"] = version}, multi = bool,
-- sleeping = bool}, or nil and what is wrong with it. A version: {release, weight, peers = {{host, port, "host:port"}}, lo, hi, name,
-- cookie}; a connection whose slot (0..99) is in [lo, hi) gets it.
local function parse(text)
    local versions, by_release = {}, {}
    local current, sleeping
    for field in text:gmatch("%S+") do
        local release, weight = field:match("^(%d+)=(%d+)$")
        if field == "sleep" then
            sleeping = true
        elseif release then
            current = {release = tonumber(release), weight = tonumber(weight), peers = {}}
            versions[#versions + 1] = current
        else
            local host, port = field:match("^([%w%.:%[%]]+):(%d+)$")
            if not host then
                return nil, "not host:port: " .. field
            end
            if not current then
                current = {release = 0, weight = 100, peers = {}}
                versions[1] = current
            end
            current.peers[#current.peers + 1] = {host, tonumber(port), field}
        end
    end
    local total, last = 0, -1
    for _, version in ipairs(versions) do
        if #version.peers == 0 then
            return nil, "release " .. version.release .. " has no host:port"
        end
        if version.release <= last then
            return nil, "releases must come in ascending order, each once"
        end
        if version.weight > 100 then
            return nil, "weight " .. version.weight .. " is more than 100"
        end
        last = version.release
        version.lo, version.hi = total, total + version.weight
        total = version.hi
        version.name = tostring(version.release)
        version.cookie = COOKIE .. version.name .. COOKIE_ATTRIBUTES
        by_release[version.name] = version
    end
    if #versions > 0 and total ~= 100 then
        return nil, "weights add up to " .. total .. ", not 100"
    end
    if sleeping and #versions > 0 then
        return nil, "a sleeping app has no release routed"
    end
    return {versions = versions, by_release = by_release, multi = #versions > 1, sleeping = sleeping}
end

-- init_by_lua: the table as minipaas last wrote it (one line per app).
function M.load(path)
    local seen = {}
    local file = io.open(path, "r")
    if file then
        for line in file:lines() do
            local app, text = line:match("^(%S+)%s*(.-)%s*$")
            if app then
                local _, err = parse(text)
                if err then
                    ngx.log(ngx.ERR, "minipaas: ", path, ": the route of ", app, " is left out: ", err)
                else
                    routes:set(app, text)
                    seen[app] = true
                end
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
local parsed = {}  -- per worker: app -> {text, entry}, so a route is parsed once, not per request

local function entry_of(app)
    local text = routes:get(app)
    if not text then
        return nil
    end
    local hit = parsed[app]
    if hit and hit.text == text then  -- LuaJIT interns strings: an O(1) comparison
        return hit.entry
    end
    local entry = parse(text) or {versions = {}, by_release = {}}  -- the control server let only valid ones in
    parsed[app] = {text = text, entry = entry}
    return entry
end
M.entry_of = entry_of

-- The request's version, in this order: the release URL (`v<N>.<app's domain>`: $minipaas_release_host), the
-- X-Minipaas-Release header, the mp_release cookie (each only if it names a routed release), else the weights by
-- the connection's slot, so that a keep-alive connection or a websocket stays where it started. One version:
-- that one, and nothing else is read. nil when there is none, and then the release URL's number, if any.
local function choose(entry)
    local pinned = ngx.var.minipaas_release_host
    if pinned and pinned ~= "" then
        return entry and entry.by_release[pinned], pinned
    end
    if not entry or #entry.versions == 0 then
        return nil
    end
    local versions = entry.versions
    if not entry.multi then
        return versions[1]
    end
    local asked = ngx.var.http_x_minipaas_release
    local version = asked and entry.by_release[asked]
    if version then
        return version
    end
    local cookie = ngx.var.cookie_mp_release
    version = cookie and entry.by_release[cookie]
    if version then
        return version
    end
    -- Versions lie in release order on 0..99: as a newer release's weight grows, its clients stay in it.
    local slot = crc32(ngx.var.connection .. SALT) % 100
    for i = 1, #versions do
        if slot < versions[i].hi then
            return versions[i]
        end
    end
    return versions[#versions]
end
M.choose = choose

-- set_by_lua (not access_by_lua: no coroutine per request): the request's version into ngx.ctx.minipaas_version
-- (the balancer's and the metrics'). Returns the cookie to set ($minipaas_cookie, added by the vhost's add_header)
-- when the app has several versions and the client's cookie does not name this one, else "". A release URL
-- whose release is not routed sets $minipaas_not_running to its number: the vhost answers 404. A sleeping app's
-- request sets $minipaas_wake: the vhost hands it to wake.lua. Neither costs a request of an awake app anything.
function M.pick()
    local entry = entry_of(ngx.var.minipaas_app)
    local version, pinned = choose(entry)
    if not version then
        if entry and entry.sleeping then  -- the vhost hands the request to wake.lua, which holds it
            ngx.var.minipaas_wake = "1"
            return ""
        end
        if pinned then
            ngx.var.minipaas_not_running = pinned
        end
        return ""  -- no container at all: the balancer fails, the vhost answers 503
    end
    local ctx = ngx.ctx
    ctx.minipaas_version = version
    ctx.minipaas_entry = entry  -- what it was chosen from: `balance` follows a route changed since
    if entry.multi and ngx.var.cookie_mp_release ~= version.name then
        return version.cookie
    end
    return ""
end

-- balancer_by_lua: a container of the request's version; a failed connection moves on to the next one
-- (nginx's proxy_next_upstream) and leaves the failed one out for a while, and a request whose app has none
-- fails (the vhost's 503).
function M.balance()
    local balancer = require "ngx.balancer"
    local ctx = ngx.ctx
    local peers = ctx.minipaas_peers
    if not peers then
        local version = ctx.minipaas_version
        if not version then
            return ngx.exit(ngx.ERROR)
        end
        peers = version.peers
        ctx.minipaas_peers = peers
        turn = turn + 1
        ctx.minipaas_next = turn
        balancer.set_more_tries(#peers)
    else
        local peer = ctx.minipaas_peer
        failed:set(peer[3], true, FAIL_SECONDS)  -- called again: the last try failed
        local tried = ctx.minipaas_tried  -- made on the first retry only: the hot path allocates nothing
        if not tried then
            tried = {}
            ctx.minipaas_tried = tried
        end
        tried[peer[3]] = true
        -- The route changed since the request's version was chosen (a deploy or the task watcher switched it, or
        -- the watcher took a gone container out): the next tries follow it, to the same release's containers while
        -- it is routed, else to the version the request would get now. Without it a request whose containers all
        -- went away (a node lost, then its old release retired) tried only those, and got the vhost's 503 while
        -- the new ones answered.
        local entry = entry_of(ngx.var.minipaas_app)
        if entry and entry ~= ctx.minipaas_entry then
            ctx.minipaas_entry = entry
            local version = entry.by_release[ctx.minipaas_version.name] or choose(entry)
            if version and version.peers ~= peers then
                ctx.minipaas_version = version
                peers = version.peers
                ctx.minipaas_peers = peers
                balancer.set_more_tries(#peers)
            end
        end
    end
    -- Round robin over the peers this request has not tried: one that has not just failed first, else one that
    -- has (its failure may be old news: a container whose kept-alive connection was closed under it still
    -- serves). Each try takes another peer until every one was tried, so a request whose peers all failed lately
    -- reaches whichever of them answers again, and is never sent twice to the same dead one meanwhile.
    local tried = ctx.minipaas_tried
    local count, start = #peers, ctx.minipaas_next
    local peer, step
    for i = 0, count - 1 do
        local candidate = peers[((start + i) % count) + 1]
        if not (tried and tried[candidate[3]]) then
            if not failed:get(candidate[3]) then
                peer, step = candidate, i
                break
            end
            if not peer then
                peer, step = candidate, i  -- the first of those that failed lately, unless one has not
            end
        end
    end
    if not peer then  -- every peer tried (more tries than peers): the next in turn
        peer, step = peers[(start % count) + 1], 0
    end
    ctx.minipaas_next = start + step + 1
    ctx.minipaas_peer = peer
    local ok, err = balancer.set_current_peer(peer[1], peer[2])
    if not ok then
        ngx.log(ngx.ERR, "minipaas: cannot route to ", peer[1], ":", peer[2], ": ", err)
        return ngx.exit(ngx.ERROR)
    end
end

-- content_by_lua on the control socket: PUT the app's versions (the body), DELETE them, or GET them.
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
        local _, bad = parse(body)
        if bad then
            ngx.status = 400
            return ngx.say("expected RELEASE=WEIGHT host:port ... or sleep (", bad, ")")
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
