-- Every script in examples/ runs to the end against rivya-sim: through
-- examples/with-sim.sh as a reader would run it, and against this file's own
-- simulator to check what it asked of the API.
local helper = require "helper"
local compat = require "rivya.compat"

local sh = helper.sh_quote

local ROOT = helper.ROOT

local function is_mp4(path)
  local data = helper.read_file(path)
  return data ~= nil and #data > 100 and data:sub(5, 8) == "ftyp"
end

-- the module from this checkout, unless the environment (the Makefile) says otherwise
local LUA_ENV = os.getenv("LUA_PATH") and "" or ("LUA_PATH=%s LUA_CPATH=%s "):format(
  sh(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;"), sh(ROOT .. "/build/?.so;;"))

-- run `<helper.LUA> examples/<name>.lua args...` with env (a string of assignments)
-- prepended; returns exit status, stdout, stderr
local function run(dir, env, name, args)
  local quoted = {}
  for i, a in ipairs(args or {}) do quoted[i] = sh(a) end
  local _, how, code = compat.execute(("cd %s && env %s%s %s %s %s >%s 2>%s </dev/null"):format(sh(dir), LUA_ENV,
    env, helper.LUA, sh(ROOT .. "/examples/" .. name .. ".lua"), table.concat(quoted, " "), sh(dir .. "/out"),
    sh(dir .. "/err")))
  return how == "exit" and code or -1, helper.read_file(dir .. "/out") or "", helper.read_file(dir .. "/err") or ""
end

local WITH_SIM = ("RIVYA_SIM_ARGS='--task-seconds 0.3' RIVYA_POLL_INTERVAL=0.05 %s %s"):format(
  sh(ROOT .. "/examples/with-sim.sh"), helper.LUA)

local function with_sim(dir, name, args)
  local quoted = {}
  for i, a in ipairs(args or {}) do quoted[i] = sh(a) end
  local _, how, code = compat.execute(("cd %s && %s%s %s %s >%s 2>%s </dev/null"):format(sh(dir), LUA_ENV, WITH_SIM,
    sh(ROOT .. "/examples/" .. name .. ".lua"), table.concat(quoted, " "), sh(dir .. "/out"), sh(dir .. "/err")))
  local out, err = helper.read_file(dir .. "/out") or "", helper.read_file(dir .. "/err") or ""
  assert.are.equal(0, how == "exit" and code or -1, "stdout: " .. out .. "\nstderr: " .. err)
  return out
end

describe("the examples", function()
  local tmp, serial = nil, 0

  setup(function() tmp = helper.tmpdir() end)
  teardown(function() helper.rmrf(tmp) end)

  local function scratch()
    serial = serial + 1
    local d = ("%s/ex-%d"):format(tmp, serial)
    assert(compat.execute("mkdir -p " .. sh(d)))
    return d
  end

  describe("through examples/with-sim.sh", function()
    it("text_to_video generates a video from a prompt and saves it", function()
      local d = scratch()
      local out = with_sim(d, "text_to_video", { d .. "/t2v.mp4" })
      assert.truthy(out:find("estimate: 80 credits", 1, true))
      assert.truthy(out:find("saved " .. d .. "/t2v.mp4", 1, true))
      assert.is_true(is_mp4(d .. "/t2v.mp4"))
    end)

    it("image_to_video uploads two images and animates between them", function()
      local d = scratch()
      local out = with_sim(d, "image_to_video", { d .. "/i2v.mp4" })
      assert.truthy(out:find("reference 1: first_frame%.png %-> file_%w+ %(image/png, %d+ bytes%)"))
      assert.truthy(out:find("reference 2: last_frame%.jpg %-> file_%w+ %(image/jpeg, %d+ bytes%)"))
      assert.truthy(out:find("mode: image-to-video with 2 images, 80 credits", 1, true))
      assert.is_true(is_mp4(d .. "/i2v.mp4"))
    end)

    it("keyframe_to_video makes a keyframe with z-image, uploads it and animates it with wan-2-7-video", function()
      local d = scratch()
      local out = with_sim(d, "keyframe_to_video", { d .. "/kf" })
      assert.truthy(out:find("z-image: image, text-to-image, image-to-image", 1, true), out)
      assert.truthy(out:find("keyframe: task task_%w+ %-> " .. d:gsub("%p", "%%%0") .. "/kf/keyframe%.png"), out)
      assert.truthy(out:find("uploaded: file_%w+ %(image/png, %d+ bytes%)"), out)
      assert.truthy(out:find("mode: image-to-video with 1 image, 80 credits", 1, true), out)
      local png = helper.read_file(d .. "/kf/keyframe.png")
      assert.equal("\137PNG", png:sub(1, 4))
      assert.is_true(is_mp4(d .. "/kf/keyframe_to_video.mp4"))
    end)

    it("video_edit edits the shipped sample video with a style image", function()
      local d = scratch()
      local out = with_sim(d, "video_edit", { d .. "/edit.mp4" })
      assert.truthy(out:find("video editing", 1, true))
      assert.is_true(is_mp4(d .. "/edit.mp4"))
    end)

    it("batch_gather runs four generations together and saves each", function()
      local d = scratch()
      local out = with_sim(d, "batch_gather", { d .. "/batch" })
      assert.truthy(out:find("4 generations, 320 credits of 1000", 1, true))
      assert.truthy(out:find("credits after: 680", 1, true))
      for i = 1, 4 do assert.is_true(is_mp4(("%s/batch/%02d.mp4"):format(d, i)), i) end
    end)
  end)

  describe("against a simulator that keeps the ledger", function()
    local sim

    setup(function()
      sim = helper.start_sim{ args = { "--task-seconds", "0.3", "--credits", "100000" } }
    end)
    teardown(function() assert.is_true(sim:stop()) end)
    before_each(function() sim:reset() end)

    local function env()
      return ("RIVYA_BASE_URL=%s RIVYA_API_KEY=%s RIVYA_POLL_INTERVAL=0.05 "):format(sh(sim.url), sh(helper.KEY))
    end

    it("image_to_video sends its two uploads as image references", function()
      local d = scratch()
      local code, out, err = run(d, env(), "image_to_video", { d .. "/a.mp4" })
      assert.are.equal(0, code, out .. err)
      local ledger = sim:ledger()
      assert.are.equal(2, ledger.files)
      assert.are.equal(1, ledger.tasks_created)
      local items = ledger.tasks[1].params.referenceMediaItems
      assert.are.same({ "image", "image" }, { items[1].kind, items[2].kind })
      assert.are.equal(ledger.files_list[1].id, items[1].url:match("/files/([%w_]+)/"))
    end)

    it("video_edit sends the video with its duration token and the image", function()
      local d = scratch()
      local code, out, err = run(d, env(), "video_edit", { d .. "/b.mp4" })
      assert.are.equal(0, code, out .. err)
      local ledger = sim:ledger()
      local task = ledger.tasks[1]
      local items = task.params.referenceMediaItems
      assert.are.same({ "video", "image" }, { items[1].kind, items[2].kind })
      assert.matches("^dt_", items[1].durationToken)
      assert.are.equal("origin", task.params.audio_setting)
      -- the video reference is the shipped sample, byte for byte
      local p = io.popen("sha256sum " .. sh(ROOT .. "/sim/sample.mp4"))
      local sum = p:read("*a"):match("^(%x+)")
      p:close()
      assert.are.equal(sum, ledger.files_list[1].sha256)
    end)

    it("batch_gather creates exactly one task per prompt, never more than three at once", function()
      local d = scratch()
      local code, out, err = run(d, env(), "batch_gather", { d .. "/c" })
      assert.are.equal(0, code, out .. err)
      local ledger = sim:ledger()
      assert.are.equal(4, ledger.tasks_created)
      local seeds = {}
      for _, t in ipairs(ledger.tasks) do seeds[#seeds + 1] = compat.tointeger(t.params.seed) end
      table.sort(seeds)
      assert.are.same({ 1, 2, 3, 4 }, seeds)
      -- the fourth task is created only after one of the first three is saved
      local fourth = out:find("%[4%] task task_%w+ queued")
      local first_saved = out:find("%[%d%] task task_%w+ succeeded")
      assert.truthy(fourth and first_saved and first_saved < fourth, out)
    end)

    it("exits non-zero with the error on stderr when the API refuses the key", function()
      local d = scratch()
      local bad = ("RIVYA_BASE_URL=%s RIVYA_API_KEY=%s "):format(sh(sim.url), sh(helper.REVOKED_KEY))
      for _, name in ipairs({ "text_to_video", "image_to_video", "video_edit", "batch_gather" }) do
        local code, _, err = run(d, bad, name, { d .. "/x" })
        assert.are_not.equal(0, code, name)
        assert.truthy(err:find("api_key_revoked", 1, true), name .. ": " .. err)
      end
      assert.are.equal(0, sim:ledger().tasks_created)
    end)
  end)
end)
