--- rivya.cli.catalog: the model catalog for the command line.
-- Models the snapshot rivya ships knows (wan-2-7-video) are checked offline
-- as before. Any other model comes from the live catalog (GET
-- /api/v1/models, no key needed), cached on disk next to the ledger:
-- ${RIVYA_LEDGER's folder, else XDG_STATE_HOME or ~/.local/state}/rivya/
-- catalog.json, for RIVYA_CATALOG_TTL seconds (default 3600); `--refresh`
-- (rivya models) fetches it again. The cache names the API origin it came
-- from: another RIVYA_BASE_URL fetches its own.
local rivya = require "rivya"
local core = require "rivya.core"
local json = require "rivya.json"
local catalog = require "rivya.catalog"
local errors = require "rivya.errors"
local Ledger = require "rivya.ledger"

local M = {}

local DEFAULT_TTL = 3600
local DEFAULT_BASE_URL = "https://rivya.ai"

-- per run of cli.main: ctx, refresh, the loaded models and their compiled catalog
local run = {}

--- Start a run: the catalog is loaded at most once per run.
function M.begin(ctx)
  run = { ctx = ctx }
end

local function snapshot_ids()
  local ids = {}
  for _, m in ipairs(rivya.models()) do ids[m.id] = m end
  return ids
end

--- true when the snapshot knows model `id` (it is checked offline).
function M.offline(id)
  return snapshot_ids()[id] ~= nil
end

--- The cache file's path, or nil when no folder is known.
function M.path(getenv)
  local ledger = getenv("RIVYA_LEDGER")
  if ledger and ledger ~= "" and ledger ~= "off" then
    return (ledger:match("^(.*)/[^/]*$") or ".") .. "/catalog.json"
  end
  local dir = Ledger.state_dir(getenv)
  return dir and dir .. "/catalog.json"
end

local function read_cache(path, origin, ttl)
  local f = path and io.open(path, "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  local v = json.decode(text or "")
  if type(v) ~= "table" or v.origin ~= origin or type(v.fetched_at) ~= "number" or type(v.data) ~= "table" then
    return nil
  end
  local age = os.time() - v.fetched_at
  if age < 0 or age >= ttl then return nil end
  return v.data
end

-- write the cache atomically (a temporary file beside it, then rename); a
-- cache that cannot be written is no error: the next run fetches again
local function write_cache(path, origin, models)
  if not path then return end
  local dir = path:match("^(.*)/[^/]*$")
  if dir then os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "' 2>/dev/null") end
  local tmp = ("%s.%s.tmp"):format(path, core.random_hex(6))
  local f = io.open(tmp, "wb")
  if not f then return end
  local text = json.encode({ origin = origin, fetched_at = os.time(), data = models })
  local ok = text and f:write(text)
  ok = f:close() and ok
  if not ok or not os.rename(tmp, path) then os.remove(tmp) end
end

--- The live catalog: models, compiled | nil, err. From the disk cache when
-- it is fresh and `refresh` is not set, else fetched (and cached).
function M.load(refresh)
  if run.models and not refresh then return run.models, run.compiled end
  local ctx = run.ctx
  local getenv = ctx.getenv
  local origin = getenv("RIVYA_BASE_URL") or DEFAULT_BASE_URL
  local ttl = tonumber(getenv("RIVYA_CATALOG_TTL") or "") or DEFAULT_TTL
  local path = M.path(getenv)
  local models = not refresh and read_cache(path, origin, ttl)
  if not models then
    local client, err = ctx:client(false)
    if not client then return nil, err end
    models, err = client:models()
    if not models then return nil, err end
    write_cache(path, origin, models)
  end
  run.models, run.compiled = models, catalog.compile(models)
  if ctx.client_obj then M.seed(ctx.client_obj) end
  return run.models, run.compiled
end

--- Give `client` the catalog this run loaded (from the cache or fetched),
-- so its creates check against the very catalog the command did.
function M.seed(client)
  if run.models then client:_use_catalog(run.models, run.compiled) end
end

--- The compiled catalog that checks a request for model `id`: the snapshot
-- for the models it knows (offline), else the live one | nil, err.
function M.for_model(id)
  if type(id) ~= "string" or M.offline(id) then return catalog.snapshot() end
  local models, compiled = M.load()
  if not models then return nil, compiled end
  return compiled
end

--- The catalog object of model `id` (snapshot or live) | nil, err.
function M.model(id)
  local known = snapshot_ids()[id]
  if known then return known end
  local models, err = M.load()
  if not models then return nil, err end
  for _, m in ipairs(models) do
    if m.id == id then return m end
  end
  return nil, errors.new("validation_failed", ("model: unknown model %q (rivya models lists them)"):format(id),
    { field = "model" })
end

-- MIME type -> file extension, for outputs named after what was downloaded
local EXTENSIONS = {
  ["video/mp4"] = "mp4", ["video/quicktime"] = "mov", ["video/webm"] = "webm",
  ["image/png"] = "png", ["image/jpeg"] = "jpg", ["image/webp"] = "webp", ["image/gif"] = "gif",
  ["audio/mpeg"] = "mp3", ["audio/wav"] = "wav", ["audio/x-wav"] = "wav", ["audio/mp4"] = "m4a",
  ["audio/aac"] = "aac", ["audio/ogg"] = "ogg",
}

--- The extension of the media in the file at `path` (from its bytes), or nil.
function M.media_ext(path)
  local head = core.read_head(path, 64)
  local _, mime = core.sniff(head or "")
  return mime and EXTENSIONS[mime]
end

--- The extension an output of model `id` is expected to have, before it is
-- downloaded: from the model's category (video mp4, image png, audio mp3).
function M.expected_ext(id)
  local m = type(id) == "string" and run.ctx and M.model(id) or nil
  local category = m and m.category
  return category == "image" and "png" or category == "audio" and "mp3" or "mp4"
end

--- Rename the downloaded file at `path` (named `base`.<guess>) after its
-- bytes: `base`.<real extension>. Returns the final path.
function M.name_after_media(path, base)
  local ext = M.media_ext(path)
  if not ext or path == base .. "." .. ext then return path end
  local final = base .. "." .. ext
  if os.rename(path, final) then return final end
  return path
end

return M
