-- Per-release metrics, counted by nginx itself (log_by_lua of an app's location): requests by status class and
-- a latency histogram per app and release, per minute for the last 16 minutes (the keys expire) and as running
-- totals, in the shared dict minipaas_metrics. The control server hands them to minipaas raw (`raw`, read by
-- minipaas/routing/metrics.py); the loopback metrics server serves the totals to Prometheus (`prometheus`).
--
-- The latency is the upstream's response time (the app's, from connecting to its last byte), not the request's
-- time: the client's own network and a slow reader of a large answer would blur what differs between two
-- releases of the app; without an upstream (nginx answered itself) it is the request's time.
local routes = require "minipaas.routes"
local wake = require "minipaas.wake"
local M = {}
local dict = ngx.shared.minipaas_metrics
local floor, ceil, log, tonumber = math.floor, math.ceil, math.log, tonumber
local MINUTES = 16  -- kept per minute: 15 whole ones and the current one
local TTL = (MINUTES + 1) * 60
-- Buckets: 0 holds 0..1 ms; bucket i > 0 holds (2^((i-1)/8), 2^(i/8)] ms, 8 per doubling (9 % wide: a percentile
-- read at a bucket's geometric middle is within 4.5 %); the last, 136 (2^17 ms = 131 s), holds everything above.
local STEPS = 8
local LOG_STEP = log(2) / STEPS
local LAST = 17 * STEPS
M.STEPS, M.LAST = STEPS, LAST

-- One counter per status class and latency bucket (`c2b17`): a request adds one to it, in the totals and in its
-- minute (and its latency to the sum). Their keys are made once per worker and version (and minute), not per
-- request.
--
-- A worker adds to counters of its own (a Lua table) and moves them into the shared dict at most FLUSH seconds
-- later: at its first request after that, or by its timer when no request comes (and when it exits, at a reload).
-- Each incr of the shared dict takes the dict's lock: three per request were a measurable share of the hot path
-- (docs/benchmarks.md). Readers see a request at most FLUSH seconds after it was answered (the guard reads
-- minutes; tests poll). A worker killed outright loses at most its last FLUSH seconds of counts.
-- nginx-lua-prometheus counts the same way (per-worker counters, `sync_interval`); it is not packaged here.
local FLUSH = 0.25
local clear = require "table.clear"
local totals, minutes = {}, {}  -- key -> what this worker counted and the dict has not yet
local served = {}  -- the apps of one flush (reused)
local flushed = 0

local function flush()
    local now = ngx.now()
    -- The minutes first: a reader that sees a request in the totals sees it in its minute too.
    for key, n in pairs(minutes) do
        dict:incr(key, n, 0, TTL)
    end
    for key, n in pairs(totals) do
        dict:incr(key, n, 0)
        -- The app served a request: when, for the watcher's idle apps (wake.lua). Here, not per request.
        local app = key:match("^t (%S+)")
        if app and not served[app] then
            served[app] = true
            wake.seen(app, now)
        end
    end
    clear(minutes)
    clear(totals)
    clear(served)
    flushed = now
end
local function keys_of(app, version)
    local prefix = app .. " " .. version.name .. " "
    local keys = {prefix = prefix, total = {}, sum = "t " .. prefix .. "s", minute = -1, now = {}}
    version.metric_keys = keys
    return keys
end

local function count(app, version)  -- app: its name, or nil to read it only when the keys are made
    local keys = version.metric_keys or keys_of(app or ngx.var.minipaas_app, version)
    local class = floor(ngx.status / 100)
    if class < 1 or class > 5 then
        class = 5
    end
    local seconds = tonumber(ngx.var.upstream_response_time)
    if not seconds then  -- none (nginx answered itself), or one per try ("0.002, 0.010"): their sum
        local text = ngx.var.upstream_response_time
        if text and text ~= "" and text ~= "-" then
            seconds = 0
            for part in text:gmatch("[%d%.]+") do
                seconds = seconds + tonumber(part)
            end
        else
            seconds = ngx.now() - ngx.req.start_time()
        end
    end
    local ms = seconds * 1000
    local bucket = 0
    if ms > 1 then
        bucket = ceil(log(ms) / LOG_STEP)
        if bucket > LAST then
            bucket = LAST
        end
    end
    local slot = class * 1000 + bucket
    local key = keys.total[slot]
    if not key then
        key = "t " .. keys.prefix .. "c" .. class .. "b" .. bucket
        keys.total[slot] = key
    end
    totals[key] = (totals[key] or 0) + 1
    if class > 1 then  -- a 101's time is a websocket's whole life, no answer's latency (nor in the histograms)
        totals[keys.sum] = (totals[keys.sum] or 0) + ms
    end
    local minute = floor(ngx.time() / 60)
    if keys.minute ~= minute then
        keys.minute, keys.now = minute, {}
    end
    key = keys.now[slot]
    if not key then
        key = minute .. " " .. keys.prefix .. "c" .. class .. "b" .. bucket
        keys.now[slot] = key
    end
    minutes[key] = (minutes[key] or 0) + 1
    if ngx.now() - flushed >= FLUSH then
        flush()
    end
end

-- init_worker_by_lua: the timer that moves a quiet worker's counts into the dict (premature: the worker exits).
function M.start()
    local ok, err = ngx.timer.every(FLUSH, flush)
    if not ok then
        ngx.log(ngx.ERR, "minipaas metrics: no flush timer: ", err)
    end
end

-- log_by_lua of the app's location: the version routes.pick chose.
function M.log()
    local version = ngx.ctx.minipaas_version
    if version then
        count(nil, version)
    end
end

-- log_by_lua of the named location that answers 503 when nginx reached no container of the release (502/504
-- sent it there): its ngx.ctx is gone with the redirect, so the release is chosen again (the same inputs give
-- the same one). Counted as the 5xx the client saw.
function M.log_unavailable()
    local app = ngx.var.minipaas_app
    local entry = app and routes.entry_of(app)
    local version = entry and routes.choose(entry)
    if version then
        count(app, version)
    end
end

local function releases_of(app)
    local entry = routes.entry_of(app)
    local names = {}
    for _, version in ipairs(entry and entry.versions or {}) do
        names[#names + 1] = version.name
    end
    return names
end

-- content_by_lua on the control socket: GET /metrics?app=NAME[&releases=12,13] (default: the routed ones).
-- One counter a line, `SCOPE APP RELEASE NAME VALUE`: SCOPE `t` (since nginx started) or a minute (unix time / 60);
-- NAME c<class>b<bucket> (requests of status class 1..5 in latency bucket 0..136) or, in the totals, s (their
-- latency's sum, ms).
-- The first line: `now SECONDS steps 8 last 136`.
function M.raw()
    local app = ngx.var.arg_app
    if not app or not app:match("^[a-z][a-z0-9-]*$") then
        ngx.status = 400
        return ngx.say("expected ?app=NAME")
    end
    local releases = {}
    for release in (ngx.var.arg_releases or ""):gmatch("%d+") do
        releases[#releases + 1] = release
    end
    if #releases == 0 then
        releases = releases_of(app)
    end
    local now = ngx.now()
    local out = {"now ", string.format("%.3f", now), " steps ", STEPS, " last ", LAST, "\n"}
    local first = floor(now / 60) - MINUTES + 1
    for _, release in ipairs(releases) do
        local prefix = app .. " " .. release .. " "
        for scope = first - 1, first + MINUTES - 1 do
            local name = scope < first and "t" or tostring(scope)
            local head = name .. " " .. prefix
            local value = dict:get(head .. "s")
            if value then
                out[#out + 1] = head .. "s " .. string.format("%.3f", value) .. "\n"
            end
            for class = 1, 5 do
                local name = head .. "c" .. class .. "b"
                for i = 0, LAST do
                    value = dict:get(name .. i)
                    if value then
                        out[#out + 1] = name .. i .. " " .. value .. "\n"
                    end
                end
            end
        end
    end
    ngx.header.content_type = "text/plain"
    ngx.print(out)
end

local CLASSES = {"1xx", "2xx", "3xx", "4xx", "5xx"}

-- content_by_lua of the loopback metrics server: every routed release's totals in Prometheus' text format.
-- The histogram's buckets are every 8th of ours (1 ms, 2 ms, 4 ms ... 131 s): the doubling ones.
function M.prometheus()
    local requests = {"# HELP minipaas_requests_total Requests nginx answered for an app's release, by status class.\n",
                      "# TYPE minipaas_requests_total counter\n"}
    local durations = {"# HELP minipaas_request_duration_seconds Time the app's release took to answer "
                       .. "(upstream response time).\n",
                       "# TYPE minipaas_request_duration_seconds histogram\n"}
    local apps = ngx.shared.minipaas_routes:get_keys(0)
    table.sort(apps)
    for _, app in ipairs(apps) do
        for _, release in ipairs(releases_of(app)) do
            local head = "t " .. app .. " " .. release .. " "
            local labels = '{app="' .. app .. '",release="' .. release .. '"'
            local per_bucket = {}
            for class = 1, 5 do
                local name, n = head .. "c" .. class .. "b", 0
                for i = 0, LAST do
                    local value = dict:get(name .. i)
                    if value then
                        n = n + value
                        if class > 1 then  -- a 101's time is a websocket's whole life: no answer's latency
                            per_bucket[i] = (per_bucket[i] or 0) + value
                        end
                    end
                end
                requests[#requests + 1] = "minipaas_requests_total" .. labels .. ',code_class="' .. CLASSES[class]
                    .. '"} ' .. n .. "\n"
            end
            local below = 0
            for i = 0, LAST do
                below = below + (per_bucket[i] or 0)
                if i % STEPS == 0 then
                    durations[#durations + 1] = "minipaas_request_duration_seconds_bucket" .. labels .. ',le="'
                        .. string.format("%g", 2 ^ (i / STEPS) / 1000) .. '"} ' .. below .. "\n"
                end
            end
            durations[#durations + 1] = "minipaas_request_duration_seconds_bucket" .. labels .. ',le="+Inf"} '
                .. below .. "\n"
            durations[#durations + 1] = "minipaas_request_duration_seconds_sum" .. labels .. "} "
                .. string.format("%.6f", (dict:get(head .. "s") or 0) / 1000) .. "\n"
            durations[#durations + 1] = "minipaas_request_duration_seconds_count" .. labels .. "} " .. below .. "\n"
        end
    end
    ngx.header.content_type = "text/plain; version=0.0.4"
    ngx.print(requests)
    ngx.print(durations)
end

return M
