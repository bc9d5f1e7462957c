--- rivya.cli.request: a request from the command line, checked offline
-- with the library's schema before anything is sent.
local rivya = require "rivya"
local core = require "rivya.core"
local catalog = require "rivya.catalog"
local errors = require "rivya.errors"
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"

local shallow_copy, basename, join = util.shallow_copy, util.basename, util.join

-- What the module knows about a local reference file before a byte is sent:
-- the kind and MIME type from its signature and the model's upload limits.
-- The same checks client:upload makes (the C core's sniffer and schema);
-- they are needed here because rivya.validate takes file tables, not paths.
local function inspect_reference(path, model)
  local function fail(message)
    return nil, errors.new("validation_failed", message, { field = "file" })
  end
  local st, serr = core.stat(path)
  if not st then return fail(("file: cannot read %s: %s"):format(path, serr)) end
  if st.type ~= "file" then return fail(("file: %s is a %s, expected a regular file"):format(path, st.type)) end
  if not st.readable then return fail(("file: %s is not readable"):format(path)) end
  local head, herr = core.read_head(path, 64)
  if not head then return fail(("file: cannot read %s: %s"):format(path, herr)) end
  local kind, mime = core.sniff(head)
  if not kind then
    return fail(("file: %s is not a supported image, video or audio file (unknown signature)"):format(path))
  end
  local ok, lerr = catalog.snapshot():check_upload(model, kind, mime, st.size)
  if not ok then return nil, lerr end
  return { path = path, name = basename(path), kind = kind, mime = mime, size = st.size }
end

--- Validate `req` offline. Local paths in params.referenceMediaItems (relative
-- to base_dir) are inspected and stand in as placeholders, so a request that
-- would fail sends nothing, not even an upload.
-- Returns body, warnings, refs ({index, path, info}) | nil, err.
local function check_request(req, base_dir)
  local items = type(req.params) == "table" and req.params.referenceMediaItems
  local refs, probe = {}, req
  if type(items) == "table" then
    local params, list = shallow_copy(req.params), {}
    for i, item in ipairs(items) do list[i] = item end
    probe = shallow_copy(req)
    probe.params, params.referenceMediaItems = params, list
    for i, item in ipairs(items) do
      if type(item) == "string" then
        local path = join(base_dir or ".", item)
        local info, err = inspect_reference(path, req.model)
        if not info then
          err.field = ("params.referenceMediaItems[%d]"):format(i)
          return nil, err
        end
        refs[#refs + 1] = { index = i, path = path, info = info }
        list[i] = { url = "https://placeholder.invalid/reference-" .. i, kind = info.kind, name = info.name,
          mime_type = info.mime, duration_token = info.kind == "video" and "pending" or nil }
      end
    end
  end
  local body, warnings = rivya.validate(probe)
  if not body then return nil, warnings end
  local credits, cerr = rivya.estimate(probe)
  if not credits then return nil, cerr end
  -- show the local files in what is printed: they are uploaded at run time
  local shown = body.params and body.params.referenceMediaItems
  for _, ref in ipairs(refs) do
    local item = shown[ref.index]
    item.url, item.durationToken, item.upload = nil, nil, ref.path
  end
  return body, warnings or {}, refs, credits
end

local function read_prompt(ctx, prompt)
  if prompt == "-" then return ctx.stdin:read("a"):gsub("%s+$", "") end
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
