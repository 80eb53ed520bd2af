-- Runs docs/INTEGRATIONS.md's Neovim blocks as written: the module (saved by the test as
-- $DS_RTP/lua/datasource.lua) and the usage block ($DS_USAGE), with print and vim.notify
-- captured. Writes what happened as JSON to $DS_RESULT_FILE, then quits.
local result_file = assert(os.getenv("DS_RESULT_FILE"))
local output = {}
local state = { finished = false }

_G.print = function(...)
  local parts = {}
  for i = 1, select("#", ...) do
    parts[#parts + 1] = tostring((select(i, ...)))
  end
  output[#output + 1] = table.concat(parts, "\t")
end
vim.notify = function(msg, level)
  output[#output + 1] = "NOTIFY[" .. tostring(level) .. "] " .. tostring(msg)
end

local function run()
  vim.opt.runtimepath:prepend(assert(os.getenv("DS_RTP")))
  local datasource = require("datasource")
  local query = datasource.query
  -- Record what the documented callback receives, then let it run.
  datasource.query = function(path, params, on_done, ...)
    state.path, state.params = path, params
    return query(path, params, function(err, page, change)
      state.err, state.page, state.change = err, page, change
      local ok, callback_error = pcall(on_done, err, page, change)
      if not ok then
        state.callback_error = tostring(callback_error)
      end
      state.finished = true
    end, ...)
  end
  dofile(assert(os.getenv("DS_USAGE")))
  local limit = tonumber(os.getenv("DS_TIMEOUT_MS") or "45000")
  vim.wait(limit, function() return state.finished end, 20)
end

local ok, err = pcall(run)
if not ok then
  state.harness_error = tostring(err)
end
state.output = output
state.version = vim.version()
local file = assert(io.open(result_file, "w"))
file:write(vim.json.encode(state))
file:close()
vim.cmd("qa!")
