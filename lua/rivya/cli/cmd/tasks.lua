--- rivya.cli.cmd.tasks: `rivya tasks`, the ledger's tasks, newest first.
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"
local compat = require "rivya.compat"

local EXIT = util.EXIT

local UNITS = { s = 1, m = 60, h = 3600, d = 86400, w = 7 * 86400 }

--- Seconds from "90", "90s", "15m", "2h", "3d", "1w" | nil.
local function duration(text)
  local n, unit = tostring(text):match("^%s*(%d+%.?%d*)%s*([smhdw]?)%s*$")
  n = tonumber(n)
  if not n then return nil end
  return n * UNITS[unit ~= "" and unit or "s"]
end

local function age(seconds)
  if seconds < 60 then return ("%ds"):format(seconds) end
  if seconds < 3600 then return ("%dm"):format(math.floor(seconds / 60)) end
  if seconds < 86400 then return ("%dh"):format(math.floor(seconds / 3600)) end
  return ("%dd"):format(math.floor(seconds / 86400))
end

-- the first 40 characters (code points) of a prompt, on one line
local function short(prompt)
  prompt = tostring(prompt or ""):gsub("[%c]", " ")
  local utf8 = compat.utf8
  local ok, len = pcall(utf8.len, prompt)
  if not ok or not len then return prompt:sub(1, 40) end
  if len <= 40 then return prompt end
  return prompt:sub(1, utf8.offset(prompt, 41) - 1) .. "…"
end

local function command(ctx, a)
  local ledger, err = ctx:ledger()
  if ledger == nil then return ctx:fail(err) end
  if not ledger then return ctx:usage("the ledger is off (RIVYA_LEDGER=off)") end
  local opts = {}
  if a.pending and a.failed then return ctx:usage("--pending and --failed exclude each other") end
  opts.status = a.pending and "pending" or a.failed and "failed" or nil
  if a.since then
    opts.since = duration(a.since)
    if not opts.since then return ctx:usage("--since expects a duration like 90s, 15m, 2h or 3d, got " .. a.since) end
  end
  local rows
  rows, err = ledger:tasks(opts)
  if not rows then return ctx:fail(err) end
  local now = os.time()
  for _, t in ipairs(rows) do
    if a.json then
      ctx:emit({ id = t.id, status = t.status, model = t.model, prompt = t.prompt, credits = t.credits,
        output = t.output, saved = t.saved, idempotency_key = t.idempotency_key, created_at = t.created_at,
        error = t.error })
    else
      local saved = t.saved and t.saved_path or (t.output and (t.output .. " (not saved)")) or "-"
      ctx:out(table.concat({ t.id or "(no answer)", t.status, t.model or "-", tostring(t.credits or "-"),
        age(math.max(now - (t.created_at or now), 0)), saved, short(t.prompt) }, "  "))
    end
  end
  return EXIT.ok
end

local function add_to_parser(parser)
  local c = parser:command("tasks",
    "List the ledger's tasks, newest first (id, status, model, credits, age, output, prompt).")
  c:flag("--pending", "Only tasks not final, or final but not saved where they were to be saved.")
  c:flag("--failed", "Only failed (or refused) tasks.")
  c:option("--since", "Only tasks created in this last duration (90s, 15m, 2h, 3d)."):argname("<duration>")
  flags.common_flags(c)
  return c
end

return { add_to_parser = add_to_parser, command = command, duration = duration }
