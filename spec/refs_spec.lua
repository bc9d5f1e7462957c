-- rivya.refs: one home for reference files. The client, the CLI, batch and
-- sweep judge a file the same way, look at it once and validate once.
local helper = require "helper"
local rivya = require "rivya"
local core = require "rivya.core"
local refs = require "rivya.refs"
local catalog = require "rivya.catalog"
local compat = require "rivya.compat"

local ROOT = helper.ROOT
local PNG = ROOT .. "/examples/assets/first_frame.png"
local JPEG = ROOT .. "/examples/assets/last_frame.jpg"
local SAMPLE = ROOT .. "/sim/sample.mp4"
local RIVYA = ROOT .. "/bin/rivya"
local sh = helper.sh_quote

describe("rivya.refs", function()
  local sim, dir, client

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.1", "--credits", "100000" } }
    dir = helper.tmpdir()
    client = helper.client(sim)
  end)

  teardown(function()
    client:close()
    assert.is_true(sim:stop())
    helper.rmrf(dir)
  end)

  before_each(function() sim:reset() end)

  -- JPEG bytes under a .png name, in a directory of its own
  local function disguised()
    local path = dir .. "/photo.png"
    helper.write_file(path, helper.read_file(JPEG))
    return path
  end

  local function rivya_cli(args)
    local quoted = {}
    for i, a in ipairs(args) do quoted[i] = sh(a) end
    local out, err = dir .. "/out", dir .. "/err"
    local _, _, code = compat.execute(("env RIVYA_API_KEY=%s RIVYA_BASE_URL=%s %s %s %s >%s 2>%s </dev/null"):format(
      sh(helper.KEY), sh(sim.url), helper.LUA, sh(RIVYA), table.concat(quoted, " "), sh(out), sh(err)))
    return code, helper.read_file(out), helper.read_file(err)
  end

  it("refuses a file whose name and bytes disagree the same way in upload, create, validate and batch", function()
    local path = disguised()
    local message = "photo.png is named like image/png but its bytes are image/jpeg"
    local file, uerr = client:upload(path)
    assert.is_nil(file)
    assert.are.equal("validation_failed", uerr.code)
    assert.truthy(uerr.message:find(message, 1, true), uerr.message)
    local task, cerr = client:create{ model = "wan-2-7-video", prompt = "a boat",
      params = { referenceMediaItems = { path } } }
    assert.is_nil(task)
    assert.are.equal("validation_failed", cerr.code)
    assert.are.equal("params.referenceMediaItems[1]", cerr.field)
    assert.truthy(cerr.message:find(message, 1, true), cerr.message)
    local code, out, err = rivya_cli({ "validate", "a boat", "--ref", path })
    assert.are.equal(3, code, out .. err)
    assert.truthy(err:find(message, 1, true), err)
    helper.write_file(dir .. "/jobs.jsonl", '{"prompt":"a boat","params":{"referenceMediaItems":["photo.png"]}}\n')
    code, out, err = rivya_cli({ "batch", dir .. "/jobs.jsonl", "--dry-run" })
    assert.are.equal(3, code, out .. err)
    assert.truthy(err:find(message, 1, true), err)
    -- nothing sent but the client's one catalog fetch (GET /api/v1/models)
    local sent = 0
    for _, r in ipairs(sim:control("GET", "requests").data) do
      if not (r.method == "GET" and r.path == "/api/v1/models") then sent = sent + 1 end
    end
    assert.are.equal(0, sent)
  end)

  it("stats, sniffs and validates a create's request once, local references included", function()
    -- counted where they live: the C core's file functions, the compiled
    -- catalog's validate (its metatable's method table)
    local methods = getmetatable(catalog.snapshot()).__index
    local counts, restore = {}, {}
    local function count(t, name)
      local f = t[name]
      restore[#restore + 1] = function() t[name] = f end
      t[name] = function(...)
        counts[name] = (counts[name] or 0) + 1
        return f(...)
      end
    end
    for _, name in ipairs({ "stat", "open_upload", "sniff" }) do count(core, name) end
    count(methods, "validate")
    local ok, task, err = pcall(client.create, client, { model = "wan-2-7-video", prompt = "From night to sunrise",
      params = { referenceMediaItems = { PNG, JPEG } } })
    for _, f in ipairs(restore) do f() end
    assert.is_true(ok, tostring(task))
    assert.is_table(task, tostring(err))
    assert.are.same({ stat = 2, open_upload = 2, sniff = 2, validate = 1 }, counts)   -- each file opened once
    local items = sim:ledger().tasks[1].params.referenceMediaItems
    assert.are.same({ "image/png", "image/jpeg" }, { items[1].mimeType, items[2].mimeType })
    assert.are.equal(2, sim:ledger().files)
  end)

  it("sends the uploaded files in the API's reference form, a video's duration token included", function()
    local prepared = assert(refs.prepare{ model = "wan-2-7-video", prompt = "Golden hour",
      params = { duration = 10, referenceMediaItems = { SAMPLE, JPEG } } })
    assert.are.equal(2, #prepared:pending())
    for _, ref in ipairs(prepared:pending()) do
      prepared:attach(ref.index, assert(client:upload(ref.info, { model = "wan-2-7-video" })))
    end
    assert.are.equal(0, #prepared:pending())
    local body = assert(prepared:final_body())
    assert.are.same(body, (rivya.validate{ model = "wan-2-7-video", prompt = "Golden hour",
      params = { duration = 10, referenceMediaItems = { prepared.files[1], prepared.files[2] } } }))
    assert.matches("^dt_", body.params.referenceMediaItems[1].durationToken)
    local task = assert(client:create(prepared))
    assert.are.equal(2, sim:ledger().files)   -- create uploaded nothing more
    assert.is_string(task.id)
  end)

  it("refuses an upload answer that disagrees with the bytes it was validated from", function()
    local prepared = assert(refs.prepare{ model = "wan-2-7-video", prompt = "p",
      params = { referenceMediaItems = { PNG } } })
    local cases = {
      { { url = "https://cdn.example/x.png", kind = "video", mime_type = "image/png" }, "kind video" },
      { { url = "https://cdn.example/x.png", kind = "image", mime_type = "image/jpeg" }, "MIME type image/jpeg" },
      { { url = "javascript:alert(1)", kind = "image", mime_type = "image/png" }, "no usable url" },
      { { url = "https://cdn.example/a b", kind = "image", mime_type = "image/png" }, "no usable url" },
    }
    for _, case in ipairs(cases) do
      prepared:attach(1, case[1])
      local body, err = prepared:final_body()
      assert.is_nil(body)
      assert.are.equal("bad_response", err.code)
      assert.are.equal("params.referenceMediaItems[1]", err.field)
      assert.truthy(err.message:find(case[2], 1, true), err.message)
    end
  end)

  it("reads a batch line's relative reference from the batch file's directory", function()
    local prepared = assert(refs.prepare({ model = "wan-2-7-video", prompt = "p",
      params = { referenceMediaItems = { "first_frame.png" } } }, { base_dir = ROOT .. "/examples/assets" }))
    assert.are.equal(PNG, prepared.locals[1].path)
    assert.are.equal("image/png", prepared.locals[1].info.mime)
    local none, err = refs.prepare({ model = "wan-2-7-video", prompt = "p",
      params = { referenceMediaItems = { "first_frame.png" } } }, { base_dir = dir })
    assert.is_nil(none)
    assert.truthy(err.message:find("cannot read " .. dir .. "/first_frame.png", 1, true), err.message)
  end)
end)
