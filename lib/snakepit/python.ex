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

  @doc """
  Environment for a Python worker process: `PYTHONPATH` (the folders of
  `python_path`, then the library's package folder, then a `PYTHONPATH`
  given in `extra`), unbuffered output, and the rest of `extra`.
  """
  @spec env(keyword | [{String.t(), String.t()}], [Path.t()]) :: [{String.t(), String.t()}]
  def env(extra \\ [], python_path \\ []) do
    extra = Enum.map(extra, fn {k, v} -> {to_string(k), to_string(v)} end)
    {given, extra} = Enum.split_with(extra, &match?({"PYTHONPATH", _}, &1))

    folders =
      Enum.map(python_path, &Path.expand/1) ++ [package_dir() | Enum.map(given, &elem(&1, 1))]

    [{"PYTHONPATH", Enum.join(folders, ":")}, {"PYTHONUNBUFFERED", "1"} | extra]
  end

  @doc "True for a list of folder names (`:python_path`)."
  @spec path_list?(term) :: boolean
  def path_list?(list), do: Snakepit.Args.list_of?(list, &path?/1)

  defp path?(p),
    do: is_binary(p) and p != "" and String.valid?(p) and not String.contains?(p, [<<0>>, ":"])

  @doc """
  `{:ok, path}` of an interpreter given as a path or a name on `PATH`;
  `{:error, {:python_not_found, python}}` when there is none.
  """
  @spec find(String.t()) :: {:ok, String.t()} | {:error, {:python_not_found, String.t()}}
  def find(python) when is_binary(python) do
    found =
      if String.contains?(python, "/"),
        do: File.regular?(python) && python,
        else: System.find_executable(python)

    if found, do: {:ok, found}, else: {:error, {:python_not_found, python}}
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
