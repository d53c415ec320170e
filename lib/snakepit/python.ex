defmodule Snakepit.Python do
  @moduledoc """
  Where the Python side lives: the interpreter to run workers with and the
  folder of the `snakepit_bridge` package.

  ## Configuration

      config :snakepit_telemetry, python_executable: "/opt/venv/bin/python"

  Default: the project-local virtualenv `.venv/bin/python` (created by
  `make setup`) when it exists, else `python3` from `PATH`.
  """

  @doc "The Python interpreter to start workers with."
  @spec executable() :: String.t()
  def executable do
    Application.get_env(:snakepit_telemetry, :python_executable) || default_executable()
  end

  @doc "The folder to put on `PYTHONPATH` (holds `snakepit_bridge`)."
  @spec package_dir() :: String.t()
  def package_dir, do: Path.join(priv_dir(), "python")

  @doc "Environment for a Python worker process: `PYTHONPATH` and unbuffered output."
  @spec env(keyword | [{String.t(), String.t()}]) :: [{String.t(), String.t()}]
  def env(extra \\ []) do
    [{"PYTHONPATH", package_dir()}, {"PYTHONUNBUFFERED", "1"}] ++
      Enum.map(extra, fn {k, v} -> {to_string(k), to_string(v)} end)
  end

  defp default_executable do
    venv = Path.join(project_root(), ".venv/bin/python")

    cond do
      File.exists?(venv) -> venv
      exe = System.find_executable("python3") -> exe
      true -> "python3"
    end
  end

  defp priv_dir do
    case :code.priv_dir(:snakepit_telemetry) do
      {:error, _} -> Path.join(project_root(), "priv")
      dir -> to_string(dir)
    end
  end

  # priv/ is a symlink into the source tree, so its parent is the project.
  defp project_root, do: Path.expand("../..", __DIR__)
end
