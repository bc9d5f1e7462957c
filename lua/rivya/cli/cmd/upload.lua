--- rivya.cli.cmd.upload: `rivya upload`.
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"
local steps = require "rivya.cli.task"
local context = require "rivya.cli.context"

local EXIT = util.EXIT

local function command(ctx, a)
  local model = a.model ~= "" and a.model or nil
  local client, cerr = ctx:client(true)
  if not client then return context.client_fail(ctx, cerr) end
  local p = {}
  steps.transfer_begins(p, "uploading " .. util.basename(a.file), nil)
  ctx.status.render = steps.render(p)
  return ctx:live(function()
    local file, err = client:upload(a.file, { kind = a.kind, model = model, on_progress = steps.progress(ctx, p) })
    if not file then return ctx:fail(err) end
    if a.json then
      ctx:emit(file)
    else
      ctx:out(("%s  %s  %s  %s  %s%s"):format(tostring(file.id), tostring(file.kind), tostring(file.mime_type),
        util.human_bytes(file.size_bytes), tostring(file.url),
        file.duration_token and ("  duration_token=" .. file.duration_token) or ""))
    end
    return EXIT.ok
  end)
end

local function add_to_parser(parser)
  local c = parser:command("upload", "Upload a reference file to the Files API.")
  c:argument("file", "The image or video.")
  c:option("--kind", "image or video (default: from the file's bytes)."):choices({ "image", "video", "audio" })
  c:option("--model", "Apply this model's upload rules (default " .. flags.default_model() .. "; '' for none).")
    :default(flags.default_model())
  flags.common_flags(c)
  return c
end

return { add_to_parser = add_to_parser, command = command }
