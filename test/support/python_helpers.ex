defmodule Snakepit.Test.PythonHelpers do
  @moduledoc false
  # Runs real Python from tests, with the project's interpreter and package.

  @doc "Runs `python -m module args...`; returns trimmed stdout, raising on failure."
  def run_module!(module, args \\ [], env \\ []) do
    {out, status} =
      System.cmd(Snakepit.Python.executable(), ["-m", module | args],
        env: Snakepit.Python.env(env),
        stderr_to_stdout: true
      )

    if status != 0, do: raise("python -m #{module} exited #{status}: #{out}")
    String.trim(out)
  end

  @doc "Path of a file under priv/python."
  def script(relative), do: Path.join(Snakepit.Python.package_dir(), relative)
end
