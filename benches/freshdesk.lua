-- wrk script for benches/ingest.sh: unique ~1.5 KB Freshdesk deliveries, authenticated with
-- the shared-secret header the way supportopsd's Freshdesk automation rules send them.
local threads = {}
local integrations = tonumber(os.getenv("BENCH_INTEGRATIONS") or "500")
local secret = os.getenv("BENCH_SECRET") or "bench-secret"

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local counter = 0
local words = string.rep("printer on fire again ", 50)

function request()
  counter = counter + 1
  local id = tid * 100000000 + counter
  local body = '{"freshdesk_webhook":{"supportopsd_event":"ticket_created",'
    .. '"triggered_event":"{ticket_action:created}","ticket_id":"' .. id .. '",'
    .. '"ticket_subject":"Ticket ' .. id .. ': ' .. words .. '",'
    .. '"ticket_url":"https://acme.freshdesk.com/helpdesk/tickets/' .. id .. '",'
    .. '"ticket_status":"Open","ticket_priority":"Urgent","ticket_source":"Email",'
    .. '"ticket_type":"Incident","ticket_tags":"vip, printer","requester_name":"Dana Whitfield",'
    .. '"requester_email":"dana.whitfield@example.com","agent_name":"","agent_email":""}}'
  local path = "/api/webhooks/freshdesk/fd-" .. (id % integrations)
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["X-Supportopsd-Token"] = secret,
  }, body)
end

function done(summary, latency, requests)
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f errors=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout))
end
