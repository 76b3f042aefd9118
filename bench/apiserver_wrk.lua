-- wrk script for bench/apiserver.py: one request shape per mode, the same load generator for the
-- API server and for etcd's own HTTP/JSON gateway beneath it.
--
--   wrk -t1 -c32 -d5s -s bench/apiserver_wrk.lua URL -- MODE PREFIX [N]
--
-- MODE  api-create   POST a ConfigMap named PREFIX-<counter>
--       api-create-cr  POST a custom object (BenchItem, bench.minik.io/v1) of the same size named PREFIX-<counter>
--       api-get      GET ConfigMap PREFIX-<2..N+1>, round robin
--       etcd-put     POST /v3/kv/put of key /bench/PREFIX/<counter>, a value the size of a stored ConfigMap
--       etcd-range   POST /v3/kv/range of key /bench/PREFIX/<2..N+1>, round robin
--
-- wrk calls request() once before the run to check it, and never sends that request: the counter's
-- first value is lost, so the objects a create run writes are numbered from 2.
--
-- done() prints one line of key=value pairs (latencies in microseconds) for the benchmark to parse.

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chunk = {}
    for j = 1, 4 do
      local index = math.floor(n / 64 ^ (4 - j)) % 64
      chunk[j] = alphabet:sub(index + 1, index + 1)
    end
    if not c then chunk[4] = "=" end
    if not b then chunk[3] = "=" end
    out[#out + 1] = table.concat(chunk)
  end
  return table.concat(out)
end

local mode, prefix, n = "api-get", "x", 1
local counter = 0
local filler = string.rep("x", 200)
local json = { ["Content-Type"] = "application/json" }
local create_tail = '","labels":{"app":"bench"}},"data":{"key":"' .. filler .. '"}}'
local create_cr_tail = '","labels":{"app":"bench"}},"spec":{"key":"' .. filler .. '"}}'
-- what the API server stores for one of the ConfigMaps above (about 420 bytes)
local stored_value = base64(
  '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"bench-000000","labels":{"app":"bench"},'
    .. '"namespace":"default","uid":"00000000-0000-0000-0000-000000000000",'
    .. '"creationTimestamp":"2000-01-01T00:00:00Z"},"data":{"key":"' .. filler .. '"}}'
)

init = function(args)
  mode, prefix, n = args[1] or mode, args[2] or prefix, tonumber(args[3] or "1")
end

request = function()
  counter = counter + 1
  local cycled = (counter % n) + 2
  if mode == "api-create" then
    local body = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"' .. prefix .. "-" .. counter .. create_tail
    return wrk.format("POST", "/api/v1/namespaces/default/configmaps", json, body)
  elseif mode == "api-create-cr" then
    local body = '{"apiVersion":"bench.minik.io/v1","kind":"BenchItem","metadata":{"name":"' .. prefix .. "-" .. counter
      .. create_cr_tail
    return wrk.format("POST", "/apis/bench.minik.io/v1/namespaces/default/benchitems", json, body)
  elseif mode == "etcd-put" then
    local key = base64("/bench/" .. prefix .. "/" .. counter)
    return wrk.format("POST", "/v3/kv/put", json, '{"key":"' .. key .. '","value":"' .. stored_value .. '"}')
  elseif mode == "etcd-range" then
    local key = base64("/bench/" .. prefix .. "/" .. cycled)
    return wrk.format("POST", "/v3/kv/range", json, '{"key":"' .. key .. '"}')
  end
  return wrk.format("GET", "/api/v1/namespaces/default/configmaps/" .. prefix .. "-" .. cycled)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d non2xx=%d socket_errors=%d duration_us=%d p50_us=%d p99_us=%d\n",
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99)
  ))
end
