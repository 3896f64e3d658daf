-- bench-oha's requests and report when GENERATOR=wrk: the method and body come from the
-- environment (WRK_METHOD, WRK_BODY; headers are wrk's -H), and the report is one JSON object
-- on the last line of wrk's output, read by oha.py's `row`.
wrk.method = os.getenv("WRK_METHOD") or "GET"
local body = os.getenv("WRK_BODY")
if body ~= nil and body ~= "" then
  wrk.body = body
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"generator":"wrk","requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,'
      .. '"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
