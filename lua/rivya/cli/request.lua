--- rivya.cli.request: a request from the command line, checked offline
-- with the library's schema before anything is sent.
local refs = require "rivya.refs"
local cli_catalog = require "rivya.cli.catalog"
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"

local shallow_copy = util.shallow_copy

--- Check `req` offline through rivya.refs, as client:create does: local
-- paths in params.referenceMediaItems (relative to base_dir) inspected and
-- validated once, so a request that would fail sends nothing, not even an
-- upload. With `credits`, also what a run reserves. Uploaded files named
-- by id are looked up through ctx's client (the only network use here).
-- Returns prepared (rivya.refs), the body as printed, credits | nil, err.
local function check_request(ctx, req, base_dir, credits)
  -- the snapshot for the models it knows (offline), else the live catalog
  local cat, cerr = cli_catalog.for_model(req.model)
  if not cat then return nil, cerr end
  local prepared, err = refs.prepare(req, { base_dir = base_dir, catalog = cat, resolve = function(id)
    local client, ccerr = ctx:client(true)
    if not client then return nil, ccerr end
    return client:file(id)
  end })
  if not prepared then return nil, err end
  local n
  if credits then
    n, err = cat:estimate(prepared.req)
    if not n and err.code ~= "unknown" then return nil, err end   -- unknown: billing not FIXED
  end
  -- show the local files in what is printed: they are uploaded at run time
  local shown = prepared.body
  if #prepared.locals > 0 then
    shown = shallow_copy(shown)
    shown.params = shallow_copy(shown.params)
    local list = {}
    for i, item in ipairs(shown.params.referenceMediaItems) do list[i] = item end
    shown.params.referenceMediaItems = list
    for _, ref in ipairs(prepared.locals) do
      local item = shallow_copy(list[ref.index])
      item.url, item.durationToken, item.upload = nil, nil, ref.path
      list[ref.index] = item
    end
  end
  return prepared, shown, n
end

local function read_prompt(ctx, prompt)
  if prompt == "-" then return ctx.stdin:read("*a"):gsub("%s+$", "") end
  return prompt
end

-- model, prompt and params from the flags of generate/validate/estimate
local function request_from_args(ctx, a, specs)
  local params, perr = flags.params_from_args(a, specs)
  if not params then return nil, perr end
  local req = { model = a.model or flags.default_model(), prompt = read_prompt(ctx, a.prompt), params = params,
    client_request_id = a.client_request_id }
  if a.ref and #a.ref > 0 then
    params.referenceMediaItems = {}
    for i, path in ipairs(a.ref) do params.referenceMediaItems[i] = path end
  end
  return req
end

return {
  check = check_request,
  read_prompt = read_prompt,
  from_args = request_from_args,
}
