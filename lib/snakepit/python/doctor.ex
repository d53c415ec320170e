defmodule Snakepit.Python.Doctor do
  @moduledoc """
  Checks a Python environment for Snakepit workers, as `mix snakepit.doctor`
  does: the interpreter is there and new enough, each package of the
  library's `requirements.txt` is installed at a version it allows and
  imports, the worker's own package (`snakepit_bridge` and its generated
  stubs) imports, and so does each adapter module of the configured pools.
  Each failed check comes with the fix.
  """

  alias Snakepit.Python

  @type check :: %{check: String.t(), ok: boolean, detail: String.t(), fix: String.t() | nil}

  @doc """
  Runs the checks; a list of `t:check/0`.

  ## Options

    * `:python` - the interpreter (default `Snakepit.Python.executable/0`)
    * `:python_path` - folders for `PYTHONPATH` (default: those of the
      configured pools)
    * `:adapters` - Python modules to import (default: the configured
      pools' `:adapter_module`s)
  """
  @spec run(keyword) :: [check]
  def run(opts \\ []) do
    python = Keyword.get_lazy(opts, :python, &Python.executable/0)
    pools = Application.get_env(:snakepit_telemetry, :pools, [])
    python_path = Keyword.get_lazy(opts, :python_path, fn -> pool_values(pools, :python_path) end)
    adapters = Keyword.get_lazy(opts, :adapters, fn -> pool_values(pools, :adapter_module) end)

    case Python.find(python) do
      {:ok, exe} ->
        interpreter(exe, python) ++ environment(exe, python_path, adapters)

      {:error, {:python_not_found, _}} ->
        [
          %{
            check: "python",
            ok: false,
            detail: "interpreter not found: #{python}",
            fix: setup_fix()
          }
        ]
    end
  end

  @doc "True when every check passed."
  @spec ok?([check]) :: boolean
  def ok?(checks), do: Enum.all?(checks, & &1.ok)

  @doc "The checks as text, one line each, a failed one followed by its fix."
  @spec format([check]) :: String.t()
  def format(checks) do
    Enum.map_join(checks, "\n", fn
      %{ok: true} = c -> "  ok    #{c.check}: #{c.detail}"
      c -> "  FAIL  #{c.check}: #{c.detail}\n        fix: #{c.fix}"
    end)
  end

  defp interpreter(exe, python) do
    if exe == python, do: [], else: [%{check: "interpreter", ok: true, detail: exe, fix: nil}]
  end

  defp environment(exe, python_path, adapters) do
    script = Path.join(Python.package_dir(), "scripts/env_check.py")
    args = [script, Python.requirements_file() | adapters]

    case System.cmd(exe, args, env: Python.env([], python_path), stderr_to_stdout: true) do
      {out, 0} ->
        for line <- String.split(out, "\n", trim: true), c = parse(line, exe), do: c

      {out, status} ->
        [
          %{
            check: "python",
            ok: false,
            detail: "#{exe} exited with status #{status}: #{String.slice(out, 0, 500)}",
            fix: setup_fix()
          }
        ]
    end
  end

  defp parse(line, exe) do
    case String.split(line, "\t", parts: 3) do
      [check, "ok", detail] -> %{check: check, ok: true, detail: detail, fix: nil}
      [check, "fail", detail] -> %{check: check, ok: false, detail: detail, fix: fix(check, exe)}
      _ -> nil
    end
  end

  defp fix("python", _exe),
    do:
      "install Python 3.11 or newer, then `mix snakepit.setup --python /path/to/python3` " <>
        "(or set config :snakepit_telemetry, python_executable: ...)"

  defp fix("package " <> _, exe),
    do:
      "#{setup_fix()}; or install them here: #{exe} -m pip install -r #{Python.requirements_file()}"

  defp fix("snakepit_bridge", _exe),
    do: "the worker's packages are missing or too old for its stubs: #{setup_fix()}"

  defp fix("adapter " <> module, _exe),
    do: "put the folder that holds #{module} in the pool's :python_path (see Snakepit.Pool)"

  defp fix(_check, _exe), do: setup_fix()

  defp setup_fix,
    do:
      "run `mix snakepit.setup` (creates #{Path.relative_to_cwd(Python.env_dir())} with the worker's requirements)"

  defp pool_values(pools, key) do
    pools
    |> Enum.flat_map(fn {_name, opts} -> List.wrap(opts[key]) end)
    |> Enum.uniq()
  end
end
