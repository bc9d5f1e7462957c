-- The live catalog against rivya-sim: client:models() with the documented
-- fields, fetched once per client; client:validate/estimate and every create
-- for any model it lists; models that are not callable refused before
-- anything is sent.
local helper = require "helper"
local rivya = require "rivya"
local cjson = require "cjson"

local DOCUMENTED = { "id", "display_name", "category", "runtime", "base_credits", "billing_type",
  "supported_modes", "max_prompt_length", "params", "api_status", "api_input_status",
  "supported_api_inputs", "requires_files_api", "requires_upload_for_modes", "url_input_supported",
  "file_kinds", "notices" }

describe("the live catalog", function()
  local sim, dir

  local function requests(method, path)
    local n = 0
    for _, r in ipairs(sim:control("GET", "requests").data) do
      if (not method or r.method == method) and (not path or r.path == path) then n = n + 1 end
    end
    return n
  end

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.3", "--credits", "1000" } }
    dir = helper.tmpdir()
  end)

  teardown(function()
    sim:stop()
    helper.rmrf(dir)
  end)

  before_each(function() sim:reset() end)

  it("lists every model with the documented fields, fetched once per client", function()
    local c = helper.client(sim)
    local models = assert(c:models())
    local ids = {}
    for _, m in ipairs(models) do
      ids[m.id] = m
      for _, field in ipairs(DOCUMENTED) do
        if field ~= "max_prompt_length" then assert.is_not_nil(m[field], m.id .. " lacks " .. field) end
      end
    end
    for _, id in ipairs({ "wan-2-7-video", "z-image", "rivya-tts", "veo-4-video", "studio-upscale", "rivya-chat" }) do
      assert.is_table(ids[id], id)
    end
    assert.equal("image", ids["z-image"].category)
    assert.equal("steps", ids["z-image"].params[2].key)
    models[1].id = "changed"                            -- fresh tables on each call
    assert.not_equal("changed", c:models()[1].id)
    assert(c:validate{ model = "z-image", prompt = "a fox" })
    assert(c:create{ model = "z-image", prompt = "a fox" })
    assert.equal(1, requests("GET", "/api/v1/models"))
    c:close()
  end)

  it("validates and creates a model the offline snapshot does not know", function()
    local req = { model = "z-image", prompt = "a red fox in snow", params = { steps = "12", size = "768x768",
      guidance = 4.5 } }
    local body, err = rivya.validate(req)
    assert.is_nil(body)
    assert.equal("model", err.field)
    local c = helper.client(sim)
    body = assert(c:validate(req))
    assert.same({ steps = 12, size = "768x768", guidance = 4.5 }, body.params)
    assert.equal(4, c:estimate(req))
    local task = assert(c:generate(req, { output = dir .. "/fox.png" }))
    assert.equal("succeeded", task.status)
    local f = assert(io.open(dir .. "/fox.png", "rb"))
    assert.equal("\137PNG", f:read(4))
    f:close()
    c:close()
  end)

  it("checks a live model's params before sending: select, range, required", function()
    local c = helper.client(sim)
    local _, err = c:create{ model = "z-image", prompt = "x", params = { steps = 51 } }
    assert.equal("params.steps", err.field)
    assert.equal("an integer from 1 to 50", err.expected)
    _, err = c:create{ model = "rivya-tts", prompt = "Hello there" }
    assert.equal("params.voice", err.field)
    assert.equal("nothing", err.got)
    _, err = c:create{ model = "z-image", prompt = "x", params = { stepz = 5 } }
    assert.truthy(err.message:find('did you mean "params.steps"', 1, true), err.message)
    assert.equal(0, requests("POST"))
    c:close()
  end)

  it("refuses models that are not callable, naming their status, before sending", function()
    local c = helper.client(sim)
    for id, status in pairs({ ["veo-4-video"] = "coming_soon", ["studio-upscale"] = "studio_only" }) do
      local task, err = c:create{ model = id, prompt = "a wave" }
      assert.is_nil(task)
      assert.equal("validation_failed", err.code)
      assert.equal(status, err.api_status)
      assert.truthy(tostring(err):find(status, 1, true))
    end
    local _, err = c:create{ model = "rivya-chat", prompt = "hello" }
    assert.equal("chat", err.runtime)
    assert.equal(0, requests("POST"))
    c:close()
  end)

  it("estimates base_credits for FIXED billing, unknown otherwise", function()
    local c = helper.client(sim)
    assert.equal(80, c:estimate{ model = "wan-2-7-video", prompt = "x" })
    local credits, err = c:estimate{ model = "rivya-tts", prompt = "Hello", params = { voice = "ember" } }
    assert.is_nil(credits)
    assert.equal("unknown", err.code)
    assert.truthy(err.message:find("PER_1K_CHARACTERS", 1, true))
    c:close()
  end)

  it("passes a param of a type rivya does not know through unchecked", function()
    -- the built-in catalog with one more z-image param, edited as text (empty arrays stay arrays)
    local text = helper.read_file(helper.ROOT .. "/sim/catalog.json")
    local at = assert(text:find('"params": [', text:find('"id": "z-image"', 1, true), true))
    local extra = cjson.encode{ key = "palette", type = "color_list", required = false,
      description = "a type rivya does not know" }
    text = text:sub(1, at + 10) .. extra .. "," .. text:sub(at + 11)
    local path = dir .. "/catalog.json"
    helper.write_file(path, text)
    local other = helper.start_sim{ args = { "--catalog", path } }
    local c = rivya.new{ api_key = helper.KEY, base_url = other.url }
    local body = assert(c:validate{ model = "z-image", prompt = "x", params = { palette = { "#102030", 7 } } })
    assert.same({ "#102030", 7 }, body.params.palette)
    c:close()
    other:stop()
  end)

  it("returns the catalog's failure from a create, sending no create", function()
    sim:fault{ method = "GET", path = "/api/v1/models", action = "respond", status = 500, times = 10 }
    local c = helper.client(sim, { max_retries = 1 })
    local task, err = c:create{ model = "wan-2-7-video", prompt = "x" }
    assert.is_nil(task)
    assert.equal(500, err.status)
    assert.equal(0, requests("POST"))
    sim:control("DELETE", "faults")
    assert(c:create{ model = "wan-2-7-video", prompt = "x" })   -- a failed fetch is not kept
    c:close()
  end)

  it("fetches the catalog once for many creates at once in gather", function()
    local c = helper.client(sim)
    local fns = {}
    for i = 1, 12 do fns[i] = function() return assert(c:create{ model = "z-image", prompt = "fox " .. i }).id end end
    local results = rivya.gather(fns)
    for i = 1, 12 do assert.matches("^task_", results[i][1] or tostring(results[i][2])) end
    assert.equal(1, requests("GET", "/api/v1/models"))
    assert.equal(12, requests("POST", "/api/v1/generations"))
    c:close()
  end)
end)
