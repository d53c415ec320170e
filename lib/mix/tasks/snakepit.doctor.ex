defmodule Mix.Tasks.Snakepit.Doctor do
  @shortdoc "Checks the Python environment Snakepit workers will use"
  @moduledoc """
  Checks the Python environment of the application's Snakepit workers and
  prints a fix for each problem; exits with status 1 if there is any.

      $ mix snakepit.doctor
        ok    python: 3.11.7 at /app/.venv/bin/python
        ok    package grpcio: 1.85.3 (grpcio>=1.49.1,<2)
        FAIL  package psutil: not installed (needs psutil>=5.9.4)
              fix: run `mix snakepit.setup` ...

  Checked: the interpreter (found, Python 3.11 or newer), each package of
  the library's `requirements.txt` (installed, at an allowed version, and
  importable), the worker's own package with its generated stubs, and the
  `:adapter_module` of each pool in `config :snakepit_telemetry, :pools`
  (with the pools' `:python_path`).

  The interpreter is the one workers would use (see `Snakepit.Python`).

  ## Options

    * `--python PATH` - check this interpreter instead
    * `--python-path DIR` - a folder for `PYTHONPATH` (repeatable; default:
      the configured pools')
    * `--adapter MODULE` - a Python module that must import (repeatable;
      default: the configured pools' adapter modules)
  """
  use Mix.Task

  alias Snakepit.Python.Doctor

  @switches [python: :string, python_path: :keep, adapter: :keep]

  @impl true
  def run(argv) do
    {opts, _rest, invalid} = OptionParser.parse(argv, strict: @switches)
    if invalid != [], do: Mix.raise("unknown option: #{inspect(invalid)}")
    Mix.Task.run("app.config")

    checks = Doctor.run(doctor_options(opts))
    Mix.shell().info(Doctor.format(checks))

    if Doctor.ok?(checks) do
      Mix.shell().info("The Python environment is ready for Snakepit workers.")
    else
      Mix.shell().error("The Python environment has problems (see the fixes above).")
      exit({:shutdown, 1})
    end
  end

  @doc false
  def doctor_options(opts) do
    Enum.flat_map(opts, fn
      {:python, exe} -> [python: exe]
      _ -> []
    end) ++
      keep(opts, :python_path, :python_path) ++ keep(opts, :adapter, :adapters)
  end

  defp keep(opts, from, to) do
    case Keyword.get_values(opts, from) do
      [] -> []
      values -> [{to, values}]
    end
  end
end
