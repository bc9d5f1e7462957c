--- rivya: the Rivya Public API v1 (asynchronous AI video generation) for Lua 5.4.
-- @module rivya
local core = require "rivya.core"
local Client = require "rivya.client"
local sched = require "rivya.sched"
local errors = require "rivya.errors"
local Ledger = require "rivya.ledger"
local catalog = require "rivya.catalog"
local webhook = require "rivya.webhook"

local rivya = {}

--- Semantic version of the module.
rivya.VERSION = core.VERSION

--- A new client: `rivya.new{api_key=, base_url=, timeout=, ...}` (see README).
rivya.new = Client.new

--- Open a ledger (default path when nil: RIVYA_LEDGER, else
-- ${XDG_STATE_HOME:-~/.local/state}/rivya/ledger.db) | nil, err.
-- `ledger:tasks{status=, since=}` lists its tasks as plain tables.
function rivya.ledger(path)
  if path ~= nil and type(path) ~= "string" then
    errors.misuse("rivya.ledger: expected a path string or nil, got " .. type(path))
  end
  path = path or Ledger.default_path()
  if not path then
    return nil, errors.new("validation_failed", "no ledger: RIVYA_LEDGER is off and no path was given")
  end
  return Ledger.open(path)
end

--- The exact JSON-ready body the client would send for `req`, and a list of
-- warnings (possibly empty) | nil, err. Offline: against the catalog
-- snapshot rivya ships (client:validate uses the live catalog).
function rivya.validate(req)
  if type(req) ~= "table" then errors.misuse("rivya.validate: expected a request table, got " .. type(req)) end
  return catalog.snapshot():validate(req)
end

--- Credits a run of `req` would reserve (80 for wan-2-7-video) | nil, err
-- (code "unknown" when the model's billing is not FIXED). Offline.
function rivya.estimate(req)
  if type(req) ~= "table" then errors.misuse("rivya.estimate: expected a request table, got " .. type(req)) end
  return catalog.snapshot():estimate(req)
end

--- The catalog snapshot rivya ships: model objects in the documented shape
-- of GET /api/v1/models (each has `id`), fresh tables on each call.
rivya.models = catalog.snapshot_models

--- Run functions as coroutines: results[i] == table.pack(fns[i]()).
rivya.gather = sched.gather

--- Sleep: yields inside gather, blocks in the kernel outside. `seconds` must
-- be a finite number >= 0 (NaN, negative or infinite durations raise).
function rivya.sleep(seconds)
  if type(seconds) ~= "number" or not (seconds >= 0 and seconds < math.huge) then
    errors.misuse(("rivya.sleep: seconds must be a finite number >= 0, got %s"):format(
      type(seconds) == "number" and tostring(seconds) or type(seconds)))
  end
  return sched.sleep(seconds)
end

--- Webhook events: rivya.webhook.parse(body) -> event | nil, err
-- (unverified: act on client:confirm(event)); rivya.webhook.check_url(url).
rivya.webhook = { parse = webhook.parse, check_url = webhook.check_url, is_secret = webhook.is_secret }

--- true when `v` is a rivya error table.
rivya.is_error = errors.is

return rivya
