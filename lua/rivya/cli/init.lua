--- rivya.cli: the `rivya` command line.
-- `cli.main(argv, env, streams)` runs one command line and returns the exit
-- status; `bin/rivya` is a thin launcher around it. The work goes through the
-- library (rivya.new, client:create/wait/download/upload, rivya.validate,
-- rivya.estimate, rivya.gather), so the command validates with the very
-- schema the module uses, and its parameter flags are generated from
-- rivya.models() rather than listed here.
--
-- Exit statuses (README, "The rivya command"):
--   0 success · 1 runtime failure (generation failed, network, API, I/O)
--   2 usage error (flags, unreadable input, configuration) · 3 validation error
--   4 authentication or permission (no key, invalid/revoked/expired, scope)
--   5 insufficient credits · 6 timed out (the task keeps running server-side)
--   130 interrupted (SIGINT) · 143 terminated (SIGTERM); both remove temporary files
local argparse = require "argparse"
local rivya = require "rivya"
local core = require "rivya.core"
local errors = require "rivya.errors"
local util = require "rivya.cli.util"
local compat = require "rivya.compat"
local flags = require "rivya.cli.flags"
local status = require "rivya.cli.status"
local context = require "rivya.cli.context"
local cli_catalog = require "rivya.cli.catalog"

local cli = {}

cli.EXIT = util.EXIT
local EXIT = util.EXIT

--- The commands, in the order --help lists them: each is the module
-- rivya.cli.cmd.NAME with add_to_parser(parser, specs) and command(ctx, a, specs).
local COMMANDS = { "generate", "upload", "status", "wait", "download", "tasks", "resume", "credits", "models",
  "validate", "estimate", "batch", "sweep", "webhooks" }
local commands = {}
for _, name in ipairs(COMMANDS) do commands[name] = require("rivya.cli.cmd." .. name) end

local EPILOG = [[
Environment:
  RIVYA_API_KEY        the API key (rvya_sk_...); never a flag, never printed
  RIVYA_BASE_URL       the API origin (default https://rivya.ai)
  RIVYA_POLL_INTERVAL  seconds between status polls (default: the documented pace)
  RIVYA_TIMEOUT        seconds for one API request (default 60; a call with retries: twice that)
  RIVYA_LEDGER         the ledger of tasks (default ~/.local/state/rivya/ledger.db; off: none)
  RIVYA_ALLOW_HTTP     a host plain http:// may go to (loopback needs nothing)
  RIVYA_CA_FILE        a PEM file of extra trust anchors for TLS
  RIVYA_DEBUG          set: an internal error shows its Lua stack

Exit status: 0 ok, 1 runtime failure (generation failed, network, API, I/O),
2 usage error, 3 validation error, 4 authentication or permission,
5 insufficient credits, 6 timed out waiting (the task keeps running), 130 interrupted.]]

-- --help and --version end the parse at once: their action records what was
-- asked and raises ESCAPE through argparse (an error, not a yield: PUC Lua
-- 5.1 cannot yield across argparse's xpcall)
local ESCAPE = "rivya: the parse ended early"

local function build_parser(specs, hook, escape)
  local parser = argparse("rivya", "Generate AI videos with the Rivya Public API v1 (rivya " .. rivya.VERSION .. ").")
    :epilog(EPILOG):command_target("command"):help_max_width(100)
  hook(parser)
  parser:flag("--version", "Print the version and exit."):action(function() escape("version") end)
  for _, name in ipairs(COMMANDS) do hook(commands[name].add_to_parser(parser, specs)) end
  return parser
end

local function getenv_of(env)
  if env == nil then return os.getenv end
  if type(env) == "function" then return env end
  return function(name) return env[name] end
end

-- The live line's width, asked at each redraw: the terminal's own (so a
-- resize is followed), else $COLUMNS, else 80; streams.width for tests.
local function width_of(ctx, streams)
  local columns = tonumber(ctx.getenv("COLUMNS") or "")
  columns = columns and math.max(math.floor(columns), 20) or 80
  if streams.width then return function() return streams.width end end
  if ctx.stderr ~= io.stderr then return function() return columns end end
  return function() return core.term_size(2) or columns end
end

local function stderr_mode(ctx, a, streams)
  if a.quiet then return "quiet" end
  if streams.tty ~= nil then return streams.tty and "tty" or "plain" end
  if ctx.stderr ~= io.stderr then return "plain" end
  local term = ctx.getenv("TERM")
  if not term or term == "" or term == "dumb" then return "plain" end
  return core.isatty(2) and "tty" or "plain"
end

--- Run the rivya command. argv: the arguments (without the program name);
-- env: a table or a getenv-like function (default os.getenv); streams:
-- {stdout=, stderr=, stdin=, tty=} (default the process's). Returns the
-- exit status.
function cli.main(argv, env, streams)
  streams = streams or {}
  local ctx = context.new(streams, getenv_of(env))
  ctx.status = status.new(ctx.stderr, "plain")
  for _, v in ipairs(argv) do
    if v == "--" then break end
    if v == "--api-key" or v:match("^%-%-api%-key=") or v == "--key" or v:match("^%-%-key=") then
      ctx.stderr:write("rivya: there is no key flag: set RIVYA_API_KEY in the environment ",
        "(a flag would land in shell history and ps)\n")
      return EXIT.usage
    end
  end
  cli_catalog.begin(ctx)
  -- --model ID: that model's own flags (the live catalog's, for a model the
  -- snapshot does not know)
  local model
  for i, v in ipairs(argv) do
    if v == "--" then break end
    model = v == "--model" and argv[i + 1] or v:match("^%-%-model=(.*)$") or model
  end
  local specs = flags.param_specs()
  if model and not cli_catalog.offline(model) then
    local m, merr = cli_catalog.model(model)
    if not m then
      ctx.stderr:write("rivya: ", tostring(merr):gsub("^rivya: ", ""), "\n")
      return util.exit_code(merr)
    end
    specs = flags.param_specs({ m })
  end
  local what, asked
  local function escape(w, p)
    what, asked = w, p
    error(ESCAPE, 0)
  end
  local parser = build_parser(specs, function(p)
    p:add_help({ action = function() escape("help", p) end })
  end, escape)
  argv = flags.join_negative(argv, specs)
  ctx.json = false
  for _, v in ipairs(argv) do
    if v == "--" then break end
    if v == "--json" then ctx.json = true end
  end
  local parsed, ok, a = pcall(parser.pparse, parser, argv)
  if not parsed and not what then error(ok, 0) end
  if what == "help" then
    ctx.stdout:write(asked:get_help(), "\n")
    return EXIT.ok
  elseif what == "version" then
    ctx.stdout:write("rivya ", rivya.VERSION, "\n")
    return EXIT.ok
  end
  if not ok then
    local cmd
    for _, v in ipairs(argv) do
      if commands[v] then cmd = v break end
    end
    local message = tostring(a)
    if ctx.json then ctx:emit({ error = { code = "usage", message = message } }) end
    ctx.stderr:write("rivya: ", util.printable(message), "\nTry 'rivya ", cmd and (cmd .. " ") or "", "--help'.\n")
    return EXIT.usage
  end
  if not a.command then
    ctx.stderr:write(parser:get_usage(), "\nrivya: a command is needed; try 'rivya --help'.\n")
    return EXIT.usage
  end
  ctx.command = a.command
  ctx.status = status.new(ctx.stderr, stderr_mode(ctx, a, streams), width_of(ctx, streams))
  local env_interval = ctx.getenv("RIVYA_POLL_INTERVAL")
  if a.interval == nil and env_interval and env_interval ~= "" then
    a.interval = tonumber(env_interval)
    if not a.interval or not (a.interval > 0 and a.interval < math.huge) then
      return ctx:usage(("RIVYA_POLL_INTERVAL: expected a positive number of seconds, got '%s'"):format(env_interval))
    end
  end

  local done, code = compat.xpcall(commands[a.command].command, debug.traceback, ctx, a, specs)
  if ctx.client_obj then ctx.client_obj:close() end
  if ctx.ledger_obj then ctx.ledger_obj:close() end
  if done then return code end
  ctx.status:clear()
  local message = tostring(code)
  local signal = errors.is(code) and code.code == "interrupted" and code.signal
    or (message:match("terminated!") and "SIGTERM") or (message:match("interrupted!") and "SIGINT")
  if signal then
    ctx.stderr:write(signal == "SIGTERM" and "rivya: terminated" or "rivya: interrupted")
    if ctx.resume_hint then
      ctx.stderr:write("; ", ctx.resume_hint)
    elseif ctx.current_task then
      ctx.stderr:write("; the task keeps running: rivya wait ", util.printable(util.shell_word(ctx.current_task)),
        " --out ", util.printable(util.shell_word(ctx.current_out or "FILE")))
    end
    ctx.stderr:write("\n")
    return signal == "SIGTERM" and EXIT.terminated or EXIT.interrupted
  end
  if errors.is(code) then return ctx:fail(code) end
  -- a bug of rivya's: one line; the stack only when asked for
  ctx.stderr:write("rivya: internal error: ", util.printable(message:match("^[^\n]*")), "\n")
  if (ctx.getenv("RIVYA_DEBUG") or "") ~= "" then
    ctx.stderr:write(message, "\n")
  else
    ctx.stderr:write("rivya: (RIVYA_DEBUG=1 shows where; please report it)\n")
  end
  return EXIT.failure
end

return cli
