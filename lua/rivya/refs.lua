--- rivya.refs: reference files, prepared once for every caller.
-- The client (create, upload), the CLI (generate, validate, estimate) and the
-- batch and sweep runners all go through here, so a file is judged the same
-- way whichever door it comes in by: stat'ed and sniffed once, its name's
-- extension checked against its bytes, the model's upload limits applied,
-- and the request around it validated once, with placeholders standing for
-- the files not uploaded yet (a request that would fail sends nothing, not
-- even an upload).
local core = require "rivya.core"
local errors = require "rivya.errors"
local catalog = require "rivya.catalog"

local refs = {}

-- file name extension -> the MIME type it claims
local EXTENSION_MIME = {
  jpg = "image/jpeg", jpeg = "image/jpeg", png = "image/png", webp = "image/webp",
  mp4 = "video/mp4", m4v = "video/mp4", mov = "video/quicktime", qt = "video/quicktime",
  webm = "video/webm", mp3 = "audio/mpeg", m4a = "audio/mp4", m4b = "audio/mp4", wav = "audio/wav",
  aac = "audio/aac", ogg = "audio/ogg", oga = "audio/ogg",
}

-- what refs.inspect returns: recognised by client:upload, which then
-- sends it without looking at the file again
local Info = {}
Info.__index = Info
Info.__name = "rivya.Reference"

local Prepared = {}
Prepared.__index = Prepared
Prepared.__name = "rivya.PreparedRequest"

local function file_error(message, extra)
  local e = { field = "file" }
  for k, v in pairs(extra or {}) do e[k] = v end
  return nil, errors.new("validation_failed", message, e)
end

-- the checks of refs.inspect on what it read: kind, mime, catalog | nil, nil, err
-- (a catalog function is called only once the local checks passed)
local function judge(name, size, head, opts, cat)
  if size == 0 then return nil, file_error(("file: %s is empty"):format(name)) end
  local kind, mime = core.sniff(head)
  if not kind then
    return nil, file_error(("file: %s is not a supported image, video or audio file (unknown signature)"):format(name))
  end
  local ext = name:match("%.([%w]+)$")
  local claimed = ext and EXTENSION_MIME[ext:lower()]
  if claimed and claimed ~= mime then
    return nil, file_error(("file: %s is named like %s but its bytes are %s"):format(name, claimed, mime),
      { expected = claimed, got = mime })
  end
  if opts.kind and opts.kind ~= kind then
    return nil, file_error(("file: kind %s was asked but %s is %s (%s)"):format(opts.kind, name, kind, mime),
      { field = "kind", expected = opts.kind, got = kind })
  end
  if type(cat) == "function" then
    local cerr
    cat, cerr = cat()
    if not cat then return nil, nil, cerr end
  end
  local ok, lerr = cat:check_upload(opts.model, kind, mime, size)
  if not ok then return nil, nil, lerr end
  return kind, mime, cat
end

--- Everything known about a file before a byte is sent. `source` is a path
-- or {data = bytes, name = "x.png"}; opts: name (for a path), kind (asked),
-- model (its limits apply); cat the compiled catalog whose limits apply
-- (default the snapshot rivya ships), or a function giving it (cat | nil,
-- err), called only once the file passed its local checks. Returns info {source, name, size,
-- kind, mime} | nil, err. Misuse raises at the caller of the function
-- calling this one. A path's info also has its mtime (the ledger's) and the
-- file opened once (info.file, core.open_upload): the upload that sends it
-- streams from it and closes it.
function refs.inspect(source, opts, cat)
  opts = opts or {}
  cat = cat or catalog.snapshot()
  local name, size, head, mtime, file
  if type(source) == "string" then
    local st, serr = core.stat(source)
    if not st then return file_error(("file: cannot read %s: %s"):format(source, serr)) end
    if st.type ~= "file" then
      return file_error(("file: %s is a %s, expected a regular file"):format(source, st.type))
    end
    if not st.readable then return file_error(("file: %s is not readable"):format(source)) end
    mtime = st.mtime
    name = opts.name or source:match("([^/]+)$") or source
    -- opened once (without blocking, a regular file only): the upload streams
    -- every attempt from this descriptor and never opens the path again
    local ferr
    file, ferr = core.open_upload(source)
    if not file then return file_error(("file: cannot read %s: %s"):format(source, ferr)) end
    size, head = file:size(), file:head(64)
  elseif type(source) == "table" then
    if type(source.data) ~= "string" then errors.misuse("rivya: upload data must be a string") end
    if type(source.name) ~= "string" or source.name == "" then
      errors.misuse("rivya: upload {data=...} needs a name string")
    end
    size, name, head = #source.data, source.name, source.data:sub(1, 64)
  else
    errors.misuse("rivya: upload expects a path or {data=, name=}, got " .. type(source))
  end
  local kind, mime, judged = judge(name, size, head, opts, cat)
  if not kind then
    if file then file:close() end
    return nil, judged
  end
  cat = judged
  return setmetatable({ source = source, name = name, size = size, kind = kind, mime = mime,
    mtime = mtime, model = opts.model, catalog = cat, file = file }, Info)
end

--- true when `v` came from refs.inspect
function refs.is_info(v)
  return getmetatable(v) == Info
end

local function join(dir, path)
  if not dir or dir == "" or dir == "." or path:sub(1, 1) == "/" then return path end
  return (dir:gsub("/+$", "")) .. "/" .. path
end

local function item_field(i)
  return ("params.referenceMediaItems[%d]"):format(i)
end

-- A reference given by URL ("https://cdn.example/first.png"): its kind and
-- MIME type from the name's extension, as the file's own name would claim.
-- Returns the file table | nil, err.
local function url_reference(url, i)
  local path = url:match("^https?://[^/?#]+(/[^?#]*)") or ""
  local name = path:match("([^/]+)$")
  local ext = name and name:match("%.([%w]+)$")
  local mime = ext and EXTENSION_MIME[ext:lower()]
  if not mime then
    return nil, errors.new("validation_failed", ("%s: cannot tell what %s is from its name; upload the file, "
      .. "or give its file id or {url=, kind=, mime_type=}"):format(item_field(i), url), { field = item_field(i) })
  end
  return { url = url, name = name, kind = mime:match("^(%a+)/"), mime_type = mime }
end

-- "file_..." names an uploaded file unless a local file has that name
local function is_file_id(s, base_dir)
  return s:match("^file_[%w_%-]+$") ~= nil and core.stat(join(base_dir, s)) == nil
end

--- Prepare `req` for a create: its local reference paths (strings in
-- params.referenceMediaItems, relative to opts.base_dir) inspected once, and
-- the request validated once against opts.catalog (default the snapshot),
-- with placeholders standing for them. Other references: a file table
-- (client:upload's answer), an uploaded file's id ("file_..." or
-- {file = id}: looked up with opts.resolve(id) -> file | nil, err) or its
-- URL (https://..., the kind from the name's extension). Returns a
-- prepared request — pass it to client:create as it is — | nil, err.
-- Fields: req (the request with placeholders), body (the validated wire
-- body), warnings, locals ({index, path, info} per local file), files (the
-- uploads attached so far, by index).
function refs.prepare(req, opts)
  opts = opts or {}
  local cat = opts.catalog or catalog.snapshot()
  if getmetatable(req) == Prepared then
    if req.catalog == cat then return req end
    -- prepared against another catalog: judged again against this one,
    -- keeping the uploads already attached and the key it was given
    local again, err = refs.prepare(req.original, { base_dir = req.base_dir, catalog = cat, resolve = opts.resolve })
    if not again then return nil, err end
    for i, file in pairs(req.files) do again.files[i] = file end
    again.idempotency_key = req.idempotency_key
    return again
  end
  -- a prompt of only whitespace would be charged for nothing
  if type(req.prompt) == "string" and req.prompt ~= "" and not req.prompt:find("%S") then
    return nil, errors.new("validation_failed", "prompt: expected some text; got only whitespace",
      { field = "prompt" })
  end
  local items = type(req.params) == "table" and req.params.referenceMediaItems
  local probe, locals, changed = req, {}, false
  if type(items) == "table" then
    local list = {}
    for i, item in ipairs(items) do
      list[i] = item
      local id = type(item) == "table" and item.url == nil and item.file
        or type(item) == "string" and is_file_id(item, opts.base_dir) and item
      if id then
        if type(id) ~= "string" then
          return nil, errors.new("validation_failed", item_field(i) .. ".file: expected a file id string",
            { field = item_field(i) })
        end
        if not opts.resolve then
          return nil, errors.new("validation_failed", ("%s: the uploaded file %s is looked up through the API, "
            .. "which this check does not reach"):format(item_field(i), id), { field = item_field(i) })
        end
        local file, err = opts.resolve(id)
        if not file then
          err.field = err.field or item_field(i)
          return nil, err
        end
        list[i], changed = file, true
      elseif type(item) == "string" and item:match("^https?://") then
        local file, err = url_reference(item, i)
        if not file then return nil, err end
        list[i], changed = file, true
      elseif type(item) == "string" then
        local path = join(opts.base_dir, item)
        local info, err = refs.inspect(path, { model = req.model }, cat)
        if not info then
          err.field = item_field(i)
          return nil, err
        end
        locals[#locals + 1] = { index = i, path = path, info = info }
        list[i], changed = { url = "https://placeholder.invalid/reference-" .. i, kind = info.kind, name = info.name,
          mime_type = info.mime, duration_token = info.kind == "video" and "pending" or nil }, true
      end
    end
    if changed then
      probe = {}
      for k, v in pairs(req) do probe[k] = v end
      local params = {}
      for k, v in pairs(req.params) do params[k] = v end
      params.referenceMediaItems = list
      probe.params = params
    end
  end
  local body, warnings = cat:validate(probe)
  if not body then return nil, warnings end
  return setmetatable({ req = probe, body = body, warnings = warnings or {}, locals = locals, files = {},
    idempotency_key = req.idempotency_key, original = req, base_dir = opts.base_dir, catalog = cat }, Prepared)
end

--- true when `v` came from refs.prepare
function refs.is_prepared(v)
  return getmetatable(v) == Prepared
end

--- The uploaded file `file` stands for local reference `index` from now on.
function Prepared:attach(index, file)
  self.files[index] = file
end

--- The local references not uploaded yet, in order.
function Prepared:pending()
  local out = {}
  for _, ref in ipairs(self.locals) do
    if not self.files[ref.index] then out[#out + 1] = ref end
  end
  return out
end

--- The body to send: the validated body with every placeholder replaced by
-- its uploaded file in the API's reference form. The upload's answer must
-- agree with what was validated (kind and MIME type from the same bytes).
-- Returns body | nil, err.
function Prepared:final_body()
  if #self.locals == 0 then return self.body end
  local body, params, list = {}, {}, {}
  for k, v in pairs(self.body) do body[k] = v end
  for k, v in pairs(self.body.params) do params[k] = v end
  for i, item in ipairs(self.body.params.referenceMediaItems) do list[i] = item end
  params.referenceMediaItems = list
  body.params = params
  for _, ref in ipairs(self.locals) do
    local file, info = self.files[ref.index], ref.info
    if type(file) ~= "table" then
      errors.misuse("rivya: internal: reference " .. ref.index .. " was not uploaded")
    end
    local url, mime = file.url, file.mime_type or file.mimeType
    local token = file.duration_token or file.durationToken
    local seconds = file.duration_seconds or file.durationSeconds
    local why
    if type(url) ~= "string" or not url:match("^https?://[^%s%c]+$") then
      why = "no usable url"
    elseif file.kind ~= nil and file.kind ~= info.kind then
      why = ("kind %s, while its bytes are %s"):format(tostring(file.kind), info.kind)
    elseif mime ~= nil and mime ~= info.mime then
      why = ("MIME type %s, while its bytes are %s"):format(tostring(mime), info.mime)
    elseif list[ref.index].durationToken and type(token) ~= "string" then
      why = "no duration token for a " .. info.kind
    end
    if why then
      return nil, errors.new("bad_response", ("the upload of %s answered %s"):format(ref.path, why),
        { field = item_field(ref.index) })
    end
    local name = type(file.name) == "string" and file.name or info.name
    list[ref.index] = { url = url, kind = info.kind, name = name, mimeType = info.mime,
      durationSeconds = type(seconds) == "number" and seconds or nil,
      durationToken = type(token) == "string" and token or nil }
  end
  return body
end

refs.EXTENSION_MIME = EXTENSION_MIME

return refs
